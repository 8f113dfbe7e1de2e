# Research, DEA 2017 s.64 and the Five Safes: safe people (accredited researchers), safe
# projects (accredited by the UK Statistics Authority's panel), safe data (de-identified
# before release, see release.rego). Health and social care bodies' data are outside
# this chapter.
package concordat.common.research

import rego.v1

import data.concordat.common.register
import data.concordat.common.request
import data.concordat.common.request.req

accredited_project if {
	project := data.register.accredited_projects[register.agreement.accredited_project]
	project.status == "active"
	expires := project.expires
	is_string(expires)
	register.today <= expires
}

# Binding the roles first makes a provider missing from the register fail the check.
provider_outside_health_and_care if {
	roles := register.provider_body.roles
	not "health-and-care" in roles
}

failures contains "common.research_requester_not_accredited" if {
	request.purpose == "RESEARCH"
	not requester_accredited
}

# A rule of its own, so that a requester without accreditations fails the check on OPA
# too (see `started` in agreement.rego).
requester_accredited if "accredited-researcher" in req.requester.accreditations

failures contains "common.research_project_not_accredited" if {
	request.purpose == "RESEARCH"
	not accredited_project
}

failures contains "common.research_health_body_excluded" if {
	request.purpose == "RESEARCH"
	not provider_outside_health_and_care
}
