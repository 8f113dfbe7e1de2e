# A deliberately small bundle for the node's mechanics tests: one agreement register, one
# rule per outcome. The real jurisdictions' policies are tested in tests/unit/test_rego_bundles.py
# and end to end in tests/e2e.
package concordat.egress

import rego.v1

# The node's bundle loader files the register's agreements in shards by the MD5 of their id
# (gateway/policy/register_shards.py); policies/common reads them through register.agreement.
cited_agreement := data.register.agreement_shards[substring(crypto.md5(input.agreement_id), 0, 2)][input.agreement_id]

default decision := {
	"allow": false,
	"rule": "test.egress.no_such_agreement",
	"agreement_id": "",
	"fields": [],
	"obligations": [],
	"reasons": ["test.egress.no_such_agreement"],
	"pseudonymise": false,
}

decision := d if {
	agreement := cited_agreement
	input.purpose == agreement.purpose
	input.requester.organisation in agreement.parties
	d := {
		"allow": true,
		"rule": "test.egress.allow",
		"agreement_id": input.agreement_id,
		"fields": input.fields,
		"obligations": [],
		"reasons": [],
		"pseudonymise": false,
	}
}
