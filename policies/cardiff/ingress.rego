# Cardiff ingress: will a Welsh public body disclose this record, which fields, and with
# what obligations?
#
# Besides the WASPI protocol (local.rego), NHS Wales discloses an individual's health
# summary only against the requester's own case reference: the Caldicott principles ask
# for access on a strict need-to-know basis, and a case reference is what lets that need
# be checked later from the audit log. Bulk statistical extracts name no single case.
package concordat.ingress

import rego.v1

import data.concordat.common.checks
import data.concordat.common.decision as common_decision
import data.concordat.common.request
import data.concordat.common.request.req
import data.concordat.local

order := array.concat(local.order, ["cardiff.case_reference_required"])

failures contains "cardiff.case_reference_required" if {
	request.record_type == "HEALTH_SUMMARY"
	request.bulk == false
	not req.case_reference_present == true
}

decision := common_decision.make(
	"cardiff.ingress.allow_under_agreement",
	order,
	checks.failures("ingress") | local.failures | failures,
)
