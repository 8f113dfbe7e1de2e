# Whitehall ingress: will a UK Government body disclose this record, which fields, and
# with what obligations?
package concordat.ingress

import rego.v1

import data.concordat.common.checks
import data.concordat.common.decision as common_decision

decision := common_decision.make(
	"whitehall.ingress.allow_under_agreement",
	checks.order,
	checks.failures("ingress"),
)
