# Cardiff egress: may a Welsh public body ask for this, under this agreement?
package concordat.egress

import rego.v1

import data.concordat.common.checks
import data.concordat.common.decision as common_decision
import data.concordat.local

decision := common_decision.make(
	"cardiff.egress.allow_under_agreement",
	local.order,
	checks.failures("egress") | local.failures,
)
