# Builds the decision document both engines return. A jurisdiction passes its allow rule
# id, its full check order (the common checks plus its own, in the priority it chooses)
# and its failures.
package concordat.common.decision

import rego.v1

import data.concordat.common.obligations
import data.concordat.common.release
import data.concordat.common.request.req

make(allow_rule, _, failures) := {
	"allow": true,
	"rule": allow_rule,
	"agreement_id": req.agreement_id,
	"fields": release.fields,
	"withheld": release.withheld,
	"obligations": obligations.obligations,
	"reasons": [],
	"pseudonymise": release.pseudonymise,
} if count(failures) == 0

make(_, order, failures) := {
	"allow": false,
	"rule": reasons[0],
	"agreement_id": echoed_agreement_id,
	"fields": [],
	"withheld": {},
	"obligations": [],
	"reasons": reasons,
	"pseudonymise": false,
} if {
	count(failures) > 0
	reasons := in_order(order, failures)
}

# A failure missing from the order still denies; it is reported after the ordered ones
# so a forgotten entry in an order can never turn into an allow.
in_order(order, failures) := array.concat(
	[id | some id in order; id in failures],
	sort([id | some id in failures; not id in order]),
)

default echoed_agreement_id := ""

echoed_agreement_id := req.agreement_id if is_string(req.agreement_id)
