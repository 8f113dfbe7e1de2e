# Holyrood ingress: will a Scottish public body disclose this record, which fields, and
# with what obligations?
#
# NHS Scotland data used for anything other than direct care needs the approval of the
# Public Benefit and Privacy Panel for Health and Social Care (PBPP), so a health summary
# leaves only under an agreement that records the panel's approval reference.
package concordat.ingress

import rego.v1

import data.concordat.common.checks
import data.concordat.common.decision as common_decision
import data.concordat.common.register
import data.concordat.common.request

order := array.concat(checks.order, ["holyrood.pbpp_approval_missing"])

failures contains "holyrood.pbpp_approval_missing" if {
	request.record_type == "HEALTH_SUMMARY"
	not pbpp_approved
}

pbpp_approved if {
	is_string(register.agreement.pbpp_reference)
	register.agreement.pbpp_reference != ""
}

decision := common_decision.make(
	"holyrood.ingress.allow_under_agreement",
	order,
	checks.failures("ingress") | failures,
)
