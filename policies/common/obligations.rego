# The obligations that travel with released data. Every release carries the statutory bar
# on onward disclosure (DEA 2017 Part 5 makes unlawful disclosure an offence) and the
# agreement's retention limit; the others follow from the purpose and the data.
package concordat.common.obligations

import rego.v1

import data.concordat.common.health
import data.concordat.common.register
import data.concordat.common.request

# In a fixed order, so that both engines and every node list obligations alike. Each is a
# list of one obligation, or none when it does not apply (or a value it names is missing),
# joined without iterating: a `some` loop costs rego-cpp far more than a call.
obligations := array.concat(
	array.concat(no_onward_disclosure, retain_max_days),
	array.concat(caldicott_need_to_know, array.concat(secure_setting, statistics_only)),
)

default no_onward_disclosure := []

no_onward_disclosure := [{
	"code": "no-onward-disclosure",
	"description": "Do not disclose this data onward except as the agreement permits.",
	"parameters": {
		"agreement_id": request.agreement_id,
		"power": register.agreement.power,
		"permitted": register.agreement.onward_disclosure,
	},
}]

default retain_max_days := []

retain_max_days := [{
	"code": "retain-max-days",
	"description": "Delete this data no later than this many days after receipt.",
	"parameters": {"days": format_int(register.agreement.retention_days, 10)},
}]

default caldicott_need_to_know := []

caldicott_need_to_know := [{
	"code": "caldicott-need-to-know",
	"description": "Special category data: strict need-to-know access, minimum necessary use.",
	"parameters": {"lawful_basis": register.agreement.lawful_basis},
}] if health.special_category

default secure_setting := []

secure_setting := [{
	"code": "secure-setting",
	"description": "Use only in the accredited secure setting for this project; never re-identify.",
	"parameters": {"project": register.agreement.accredited_project},
}] if request.purpose == "RESEARCH"

default statistics_only := []

statistics_only := [{
	"code": "statistics-only",
	"description": "Use only to produce official statistics.",
	"parameters": {},
}] if request.purpose == "STATISTICS"
