# The obligations that travel with released data. Every release carries the statutory bar
# on onward disclosure (DEA 2017 Part 5 makes unlawful disclosure an offence) and the
# agreement's retention limit; the others follow from the purpose and the data.
package concordat.common.obligations

import rego.v1

import data.concordat.common.health
import data.concordat.common.register
import data.concordat.common.request.req

# Fixed so that both engines and every node list obligations in the same order.
codes := [
	"no-onward-disclosure",
	"retain-max-days",
	"caldicott-need-to-know",
	"secure-setting",
	"statistics-only",
]

obligations := [o |
	some code in codes
	o := by_code[code]
]

by_code["no-onward-disclosure"] := {
	"code": "no-onward-disclosure",
	"description": "Do not disclose this data onward except as the agreement permits.",
	"parameters": {
		"agreement_id": req.agreement_id,
		"power": register.agreement.power,
		"permitted": register.agreement.onward_disclosure,
	},
}

by_code["retain-max-days"] := {
	"code": "retain-max-days",
	"description": "Delete this data no later than this many days after receipt.",
	"parameters": {"days": format_int(register.agreement.retention_days, 10)},
}

by_code["caldicott-need-to-know"] := {
	"code": "caldicott-need-to-know",
	"description": "Special category data: strict need-to-know access, minimum necessary use.",
	"parameters": {"lawful_basis": register.agreement.lawful_basis},
} if health.special_category

by_code["secure-setting"] := {
	"code": "secure-setting",
	"description": "Use only in the accredited secure setting for this project; never re-identify.",
	"parameters": {"project": register.agreement.accredited_project},
} if req.purpose == "RESEARCH"

by_code["statistics-only"] := {
	"code": "statistics-only",
	"description": "Use only to produce official statistics.",
	"parameters": {},
} if req.purpose == "STATISTICS"
