# Builds the decision document both engines return. A jurisdiction passes its allow rule
# id, its full check order (the common checks plus its own, in the priority it chooses)
# and its failures.
package concordat.common.decision

import rego.v1

import data.concordat.common.obligations
import data.concordat.common.release
import data.concordat.common.request
import data.concordat.common.request.req

# An allow needs no failure at all; anything else is a denial. (`else` rather than a second
# definition guarded by `count(failures) > 0`: rego-cpp then skips the denial's work, and
# its builtin calls, on the way to an allow. A denial needs at least one reason, since its
# rule is `reasons[0]`; with none the decision is undefined, which the gateway denies.)
make(allow_rule, order, failures) := {
	"allow": true,
	"rule": allow_rule,
	"agreement_id": request.agreement_id,
	"fields": release.fields,
	"withheld": release.withheld,
	"obligations": obligations.obligations,
	"reasons": [],
	"pseudonymise": release.pseudonymise,
} if {
	count(failures) == 0
} else := {
	"allow": false,
	"rule": reasons[0],
	"agreement_id": echoed_agreement_id,
	"fields": [],
	"withheld": {},
	"obligations": [],
	"reasons": reasons,
	"pseudonymise": false,
} if {
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
