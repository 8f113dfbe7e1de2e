package concordat.ingress

import rego.v1

# The node's bundle loader files the register's agreements in shards by the MD5 of their id
# (gateway/policy/register_shards.py); policies/common reads them through register.agreement.
cited_agreement := data.register.agreement_shards[substring(crypto.md5(input.agreement_id), 0, 2)][input.agreement_id]

default decision := {
	"allow": false,
	"rule": "test.ingress.not_covered",
	"agreement_id": "",
	"fields": [],
	"obligations": [],
	"reasons": ["test.ingress.not_covered"],
	"pseudonymise": false,
}

decision := d if {
	agreement := cited_agreement
	agreement.status == "active"
	released := [f | some f in input.fields; f in agreement.fields[input.record_type]]
	d := {
		"allow": true,
		"rule": "test.ingress.allow",
		"agreement_id": input.agreement_id,
		"fields": released,
		"obligations": [
			{"code": "no-onward-disclosure", "description": "DEA 2017 s.40", "parameters": {}},
			{"code": "retain-max-days", "description": "delete after", "parameters": {"days": "90"}},
		],
		"reasons": [],
		"pseudonymise": agreement.purpose == "RESEARCH",
	}
}

decision := d if {
	agreement := cited_agreement
	agreement.status == "suspended"
	d := {
		"allow": false,
		"rule": "test.ingress.agreement_suspended",
		"agreement_id": input.agreement_id,
		"fields": [],
		"obligations": [],
		"reasons": ["test.ingress.agreement_suspended"],
		"pseudonymise": false,
	}
}
