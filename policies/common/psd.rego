# Public service delivery, DEA 2017 ss.35-45: disclosure only for an objective that the
# relevant national authority has set (UK ministers, Scottish ministers, Welsh ministers,
# a Northern Ireland department). Each administration's register lists the objectives its
# own authority has set, so a node checks the objective against its own law only.
package concordat.common.psd

import rego.v1

import data.concordat.common.register
import data.concordat.common.request

failures contains "common.psd_objective_not_listed" if {
	request.purpose == "PUBLIC_SERVICE_DELIVERY"
	not objective_listed
}

# A rule of its own, so that an agreement without an objective fails the check on OPA too
# (see `started` in agreement.rego).
objective_listed if register.agreement.objective in data.register.objectives
