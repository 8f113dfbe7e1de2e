# Builds realistic requests against a jurisdiction's real register, for the jurisdictions'
# own tests: a request under a registered agreement, as its requester would send it,
# decided at either end.
package concordat.common.tests.requests

import rego.v1

import data.concordat.common.register_check

# Field classes as marked in proto/concordat/records/v1/records.proto.
public_fields := {"registration_district", "band", "local_authority", "administration"}

special_category_fields := {"cause_of_death", "conditions", "medications", "allergies"}

identifying_fields := {
	"nino", "given_name", "family_name", "date_of_birth", "uprn", "address_line",
	"registration_id", "mother_family_name", "party_one_name", "party_two_name",
	"liable_nino", "liable_name", "nhs_number", "chi_number", "hc_number",
}

subject_kinds := {
	"PERSON": "nino",
	"BIRTH_REGISTRATION": "registration_id",
	"DEATH_REGISTRATION": "registration_id",
	"MARRIAGE_REGISTRATION": "registration_id",
	"BENEFIT_AWARD": "nino",
	"COUNCIL_TAX_ACCOUNT": "uprn",
	"HEALTH_SUMMARY": "nhs_number",
}

sensitivity(field) := "PUBLIC" if field in public_fields

sensitivity(field) := "SPECIAL_CATEGORY" if field in special_category_fields

sensitivity(field) := "PERSONAL" if {
	not field in public_fields
	not field in special_category_fields
}

# `requester` is "organisation@administration"; the record type is the agreement's first.
request(direction, agreement_id, requester, fields) := {
	"direction": direction,
	"node": {"egress": requesting_node, "ingress": providing_node}[direction],
	"requesting_node": requesting_node,
	"providing_node": providing_node,
	"requester": {
		"organisation": split(requester, "@")[0],
		"system": "test-system",
		"administration": requesting_node,
		"accreditations": [],
	},
	"record_type": record_type,
	"subject_kind": subject_kinds[record_type],
	"purpose": agreement.purpose,
	"agreement_id": agreement_id,
	"fields": fields,
	"field_sensitivity": {field: sensitivity(field) | some field in fields},
	"identifying_fields": [field | some field in fields; field in identifying_fields],
	"bulk": agreement.bulk,
	"today": "2026-11-21",
} if {
	agreement := register_check.agreements[agreement_id]
	requesting_node := split(requester, "@")[1]
	providing_node := split(agreement.provider, "@")[1]
	record_type := [t | some t in object.keys(agreement.record_types)][0]
}

accredited(req) := object.union(req, {"requester": object.union(req.requester, {"accreditations": ["accredited-researcher"]})})

decide(req) := decide_with(req, data.register)

decide_with(req, register) := d if {
	req.direction == "egress"
	d := data.concordat.egress.decision with data.concordat.common.request.req as req
		with data.register as register
}

decide_with(req, register) := d if {
	req.direction == "ingress"
	d := data.concordat.ingress.decision with data.concordat.common.request.req as req
		with data.register as register
}

# The real register with one term of one agreement replaced where the register keeps it,
# so the decision reads it as a node would.
with_term(agreement_id, term, value) := json.patch(
	data.register,
	[{"op": "add", "path": array.concat(agreement_path(agreement_id), [term]), "value": value}],
)

# In its shard once the bundle loader has filed the register (a node, `concordat policy
# test`, the bundle `concordat policy build` writes); keyed by id in the folders as
# written (`opa test policies/common policies/<jurisdiction>`).
agreement_path(agreement_id) := ["agreement_shards", data.concordat.common.register.shard(agreement_id), agreement_id] if {
	is_object(data.register.agreement_shards)
} else := ["agreements", agreement_id]

obligation_codes(decision) := [o.code | some o in decision.obligations]
