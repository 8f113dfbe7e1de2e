# Health and care records and other special category data (UK GDPR art. 9) need the
# extra safeguards of the Caldicott principles: a justified purpose recorded in an
# agreement that says it covers special category data, and never the research gateway,
# whose chapter excludes health and social care bodies' data.
package concordat.common.health

import rego.v1

import data.concordat.common.register
import data.concordat.common.release
import data.concordat.common.request.req

known_sensitivities := {"PUBLIC", "PERSONAL"}

# A health summary is health data whichever of its fields are asked for. Another record
# becomes special category if a field that would be released is special category, or has
# no known sensitivity at all.
special_category if req.record_type == "HEALTH_SUMMARY"

special_category if {
	some field in release.agreed_fields
	not req.field_sensitivity[field] in known_sensitivities
}

failures contains "common.special_category_not_agreed" if {
	special_category
	not register.agreement.special_category == true
}

failures contains "common.special_category_research_excluded" if {
	special_category
	req.purpose == "RESEARCH"
}
