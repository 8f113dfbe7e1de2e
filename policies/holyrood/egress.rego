# Holyrood egress: may a Scottish public body ask for this, under this agreement? The
# register carries the objectives the Scottish Ministers set for public service delivery.
package concordat.egress

import rego.v1

import data.concordat.common.checks
import data.concordat.common.decision as common_decision

decision := common_decision.make(
	"holyrood.egress.allow_under_agreement",
	checks.order,
	checks.failures("egress"),
)
