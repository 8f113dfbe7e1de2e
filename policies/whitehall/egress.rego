# Whitehall egress: may a UK Government body ask for this, under this agreement? The UK
# Government adds no checks of its own to the common ones; its register carries the UK
# public service delivery objectives (SI 2018/912).
package concordat.egress

import rego.v1

import data.concordat.common.checks
import data.concordat.common.decision as common_decision

decision := common_decision.make(
	"whitehall.egress.allow_under_agreement",
	checks.order,
	checks.failures("egress"),
)
