# Stormont ingress: will a Northern Ireland public body disclose this record, which
# fields, and with what obligations?
package concordat.ingress

import rego.v1

import data.concordat.common.checks
import data.concordat.common.decision as common_decision
import data.concordat.local

decision := common_decision.make(
	"stormont.ingress.allow_under_agreement",
	local.order,
	checks.failures("ingress") | local.failures,
)
