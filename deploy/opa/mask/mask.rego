# What a Concordat node's OPA sidecar may write to its decision log (`system.log.mask`).
#
# A node's policy input names the kind of subject, never its identifier, and says whether a
# case reference was given, never which (gateway/policy/policy_input.py). This mask
# keeps it so whoever asks OPA: anything under `input` that is not part of that document is
# erased before the decision is logged, and a known field whose text looks like a subject
# identifier is replaced, in the input and where the decision echoes it. OPA lists what it
# removed under `erased` and what it replaced under `masked` in each logged decision.
package system.log

import rego.v1

# The policy input a node sends, key by key; each holds kinds, names of bodies and fields,
# flags and the day. A key a node adds must be added here, or it is erased from the log
# (tests/integration/test_opa_decision_logs.py fails until it is).
input_keys := {
	"direction", "node", "requesting_node", "providing_node", "requester", "record_type",
	"subject_kind", "purpose", "agreement_id", "fields", "field_sensitivity",
	"identifying_fields", "case_reference_present", "bulk", "today",
}

requester_keys := {"organisation", "system", "administration", "accreditations"}

# The known fields whose text a caller chose (the agreement id it cites, the claims in its
# token), where an identifier could be pasted.
text_keys := {"agreement_id"}

requester_text_keys := {"organisation", "system"}

# NINO, the ten digits of an NHS, CHI or Health and Care number (spaced or not), a UPRN and
# a registration id (gateway/identifiers.py), upper or lower case.
identifier_patterns := [
	`^[A-Za-z]{2} ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-Da-d]$`,
	`^[0-9]{3}[ -]?[0-9]{3}[ -]?[0-9]{4}$`,
	`^[0-9]{1,12}$`,
	`^[A-Za-z]{2,4}-[BDMbdm]-[0-9]{4}-[0-9]{6}$`,
]

default redacted := "**REDACTED**"

# A key that JSON Pointer cannot name as it stands ("/" or "~" in it) erases the whole input.
mask contains "/input" if {
	some key, _ in input.input
	not key in input_keys
	not pointable(key)
}

mask contains "/input" if {
	given := input.input
	not is_object(given)
}

mask contains concat("/", ["/input", key]) if {
	some key, _ in input.input
	not key in input_keys
	pointable(key)
}

mask contains "/input/requester" if {
	requester := input.input.requester
	not is_object(requester)
}

mask contains concat("/", ["/input/requester", key]) if {
	some key, _ in input.input.requester
	not key in requester_keys
	pointable(key)
}

mask contains "/input/requester" if {
	some key, _ in input.input.requester
	not key in requester_keys
	not pointable(key)
}

mask contains {"op": "upsert", "path": concat("/", ["/input", key]), "value": redacted} if {
	some key in text_keys
	looks_like_identifier(input.input[key])
}

mask contains {"op": "upsert", "path": concat("/", ["/input/requester", key]), "value": redacted} if {
	some key in requester_text_keys
	looks_like_identifier(input.input.requester[key])
}

# Decisions echo the agreement id they were asked about.
mask contains {"op": "upsert", "path": "/result/agreement_id", "value": redacted} if {
	looks_like_identifier(input.result.agreement_id)
}

pointable(key) if not regex.match(`[/~]`, key)

looks_like_identifier(value) if {
	is_string(value)
	some pattern in identifier_patterns
	regex.match(pattern, trim_space(value))
}
