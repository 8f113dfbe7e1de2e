# The request being decided, and checks on the request itself: its shape, and whether
# this node is the one that should be deciding it.
#
# Every rule reads the request through `req`, never `input`, so tests replace it with
# `with data.concordat.common.request.req as {...}`: rego-cpp 1.5 crashes the process on
# `with input as {...}` once the rule under test depends on other rules.
#
# Checks are written as `not <condition holds>` so that a missing or mistyped value fails
# the check instead of silently skipping it.
package concordat.common.request

import rego.v1

req := input

# The values of the request that several rules read, each read once per decision: rego-cpp
# finds a field by scanning the request's keys in order (about 0.7 µs a key: `today` is
# the fifteenth), but evaluates a rule without arguments once per decision and remembers
# it. Each is undefined when the request lacks the value, exactly as `req.<key>` is.
purpose := req.purpose

record_type := req.record_type

agreement_id := req.agreement_id

fields := req.fields

field_sensitivity := req.field_sensitivity

bulk := req.bulk

# The day only when it is a string, as every date in the register is: OPA orders a number
# before every string and rego-cpp after, so a date compared with a value of another type
# would be in force on one engine and not on the other.
today := day if {
	day := req.today
	is_string(day)
}

# A list rather than a set: rego-cpp builds a set literal anew for every decision,
# comparing each member with those before it; membership reads the same either way.
purposes := [
	"PUBLIC_SERVICE_DELIVERY",
	"CIVIL_REGISTRATION",
	"DEBT",
	"FRAUD",
	"RESEARCH",
	"STATISTICS",
]

# Only the values whose absence could slip past a later check are checked here; the rest
# fail their own checks when missing. Without `identifying_fields` a research release
# could not know what to withhold, and a malformed `today` could fall inside any agreement.
# The input carries the date only: every date in the register is a day, and a day-granular
# input lets a node reuse a decision for identical requests within the day.
well_formed if {
	is_array(req.identifying_fields)
	is_boolean(bulk)
	count(today) == 10
	substring(today, 4, 1) == "-"
	substring(today, 7, 1) == "-"
}

# A node decides egress for its own requesters and ingress for its own data, and only
# with its own administration's register loaded.
deciding_node("egress") if {
	node := req.node
	node == data.register.administration
	node == req.requesting_node
}

deciding_node("ingress") if {
	node := req.node
	node == data.register.administration
	node == req.providing_node
}

failures contains "common.request_malformed" if not well_formed

# A node may only ask on behalf of bodies of its own administration.
failures contains "common.requester_administration_mismatch" if {
	not req.requester.administration == req.requesting_node
}

failures contains "common.purpose_unknown" if not known_purpose

# A rule of its own, so that a request without a purpose fails the check on OPA too (see
# `started` in agreement.rego).
known_purpose if purpose in purposes

# The checks that depend on which decision document is evaluated: it must be the one for
# the request's own direction, on the node that direction belongs to.
direction_failures(direction) := {id |
	some id in ["common.direction_mismatch", "common.not_deciding_node"]
	direction_failing(id, direction)
}

direction_failing("common.direction_mismatch", direction) if not req.direction == direction

direction_failing("common.not_deciding_node", direction) if not deciding_node(direction)
