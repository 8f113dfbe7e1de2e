package concordat.common.tests.register_check

import rego.v1

import data.concordat.common.register
import data.concordat.common.register_check
import data.concordat.common.tests.fixtures

problems(reg) := p if {
	p := register_check.problems with data.register as reg
}

test_fixture_register_has_no_problems if {
	count(problems(fixtures.register)) == 0
}

test_incomplete_agreement_is_reported if {
	reg := fixtures.with_agreement({
		"id": "other",
		"end": "2025-01-01",
		"status": "paused",
		"purpose": "MARKETING",
		"special_category": "no",
		"retention_days": -1,
		"record_types": {"BENEFIT_AWARD": "nino"},
		"parties": ["requester@alpha", "Provider Beta"],
		"review": "soon",
	})
	expected := {
		"agreement fraud-pilot: id does not match its register key",
		"agreement fraud-pilot: ends before it starts",
		"agreement fraud-pilot: status must be active, suspended or ended",
		"agreement fraud-pilot: purpose is not a known purpose",
		"agreement fraud-pilot: special_category must be true or false",
		"agreement fraud-pilot: retention_days must be a positive number",
		"agreement fraud-pilot: record_types must map record types to field lists",
		"agreement fraud-pilot: party Provider Beta is not organisation@administration",
		"agreement fraud-pilot: party Provider Beta is not a registered body",
		"agreement fraud-pilot: the provider is not one of its parties",
		"agreement fraud-pilot: review is not an ISO date",
	}
	expected - problems(reg) == set()
}

test_agreement_with_none_of_this_administration_parties_is_reported if {
	reg := fixtures.with_agreement({"parties": ["provider@beta"]})
	"agreement fraud-pilot: no party belongs to alpha" in problems(reg)
}

test_purpose_specific_terms_are_required if {
	psd := fixtures.with_agreement({"purpose": "PUBLIC_SERVICE_DELIVERY"})
	"agreement fraud-pilot: public service delivery needs an objective" in problems(psd)
	research := fixtures.with_agreement({"purpose": "RESEARCH"})
	"agreement fraud-pilot: research needs an accredited_project" in problems(research)
}

test_missing_string_term_is_reported if {
	reg := fixtures.with_agreement({"power": null})
	"agreement fraud-pilot: power must be a string" in problems(reg)
}

test_malformed_bodies_and_register_sections_are_reported if {
	reg := json.patch(fixtures.register, [
		{"op": "add", "path": "/bodies/Bad Body", "value": {"status": "closed", "listed_for": "FRAUD", "roles": []}},
		{"op": "add", "path": "/objectives", "value": "fuel-poverty"},
		{"op": "remove", "path": "/accredited_projects"},
		{"op": "add", "path": "/administration", "value": 1},
	])
	expected := {
		"body Bad Body: status must be active or suspended",
		"body Bad Body: listed_for must be a list",
		"body Bad Body: is not organisation@administration",
		"register: objectives must be a list",
		"register: accredited_projects must be an object",
		"register: administration must be a string",
	}
	expected - problems(reg) == set()
}

test_register_without_agreements_is_reported if {
	reg := json.patch(fixtures.register, [{"op": "remove", "path": "/agreements"}])
	"register: agreements must be an object" in problems(reg)
}

# The bundle loader files agreements in shards (gateway/policy/register_shards.py); a shard
# that the policy's own `register.shard` would not look in hides its agreement.
test_agreement_filed_in_the_wrong_shard_is_reported if {
	pilot := fixtures.register.agreements["fraud-pilot"]
	reg := object.union(
		json.remove(fixtures.register, ["agreements"]),
		{"agreement_shards": {"zz": {"fraud-pilot": pilot}}},
	)
	p := problems(reg)
	some problem in p
	startswith(problem, "register: agreement fraud-pilot is filed in shard zz, not ")
	count(p) == 1
}

test_agreements_filed_in_their_shards_are_read_back_whole if {
	pilot := fixtures.register.agreements["fraud-pilot"]
	reg := object.union(
		json.remove(fixtures.register, ["agreements"]),
		{"agreement_shards": {register.shard("fraud-pilot"): {"fraud-pilot": pilot}}},
	)
	count(problems(reg)) == 0
	flat := register_check.agreements with data.register as reg
	flat == fixtures.register.agreements
}

test_missing_terms_are_reported if {
	reg := fixtures.without_terms(["power", "review", "retention_days", "record_types", "status", "bulk"])
	expected := {
		"agreement fraud-pilot: power must be a string",
		"agreement fraud-pilot: review must be a string",
		"agreement fraud-pilot: review is not an ISO date",
		"agreement fraud-pilot: retention_days must be a positive number",
		"agreement fraud-pilot: record_types must map record types to field lists",
		"agreement fraud-pilot: status must be active, suspended or ended",
		"agreement fraud-pilot: bulk must be true or false",
	}
	expected - problems(reg) == set()
}

test_agreement_missing_a_register_field_is_refused_naming_the_agreement_and_field if {
	reg := fixtures.without_terms(["name", "benefits", "controllers", "processors", "areas_covered", "contact"])
	expected := {
		"agreement fraud-pilot: register field name must be a non-empty string",
		"agreement fraud-pilot: register field benefits must be a non-empty string",
		"agreement fraud-pilot: register field contact must be a non-empty string",
		"agreement fraud-pilot: register field controllers must name at least one body or area",
		"agreement fraud-pilot: register field areas_covered must name at least one body or area",
		"agreement fraud-pilot: register field processors must be a list of names (empty if none)",
	}
	problems(reg) == expected
}

test_empty_or_mistyped_register_fields_are_refused if {
	reg := fixtures.with_agreement({
		"purpose_description": "",
		"information_disclosed": 3,
		"method_of_sharing": null,
		"controllers": [],
		"areas_covered": ["Beta", ""],
		"processors": "none",
	})
	expected := {
		"agreement fraud-pilot: register field purpose_description must be a non-empty string",
		"agreement fraud-pilot: register field information_disclosed must be a non-empty string",
		"agreement fraud-pilot: register field method_of_sharing must be a non-empty string",
		"agreement fraud-pilot: register field controllers must name at least one body or area",
		"agreement fraud-pilot: register field areas_covered must name at least one body or area",
		"agreement fraud-pilot: register field processors must be a list of names (empty if none)",
	}
	problems(reg) == expected
}

test_a_controller_outside_the_parties_is_reported if {
	reg := fixtures.with_agreement({"controllers": ["requester@alpha", "stranger@gamma"]})
	problems(reg) == {"agreement fraud-pilot: controller stranger@gamma is not one of its parties"}
}

test_debt_and_fraud_agreements_need_their_pilot_terms_and_disclosure_delay if {
	reg := fixtures.without_terms(["pilot", "business_case", "evaluation_date", "disclosure_delay_days"])
	expected := {
		"agreement fraud-pilot: a debt or fraud agreement must say whether it is a pilot (pilot: true or false)",
		"agreement fraud-pilot: a debt or fraud agreement needs its business_case",
		"agreement fraud-pilot: a debt or fraud agreement needs an evaluation_date (an ISO date)",
		"agreement fraud-pilot: a debt or fraud agreement needs disclosure_delay_days (whole days, 0 or more)",
	}
	problems(reg) == expected
}

test_a_disclosure_delay_must_be_whole_days_not_negative if {
	fraud := fixtures.with_agreement({"disclosure_delay_days": -1})
	problems(fraud) == {"agreement fraud-pilot: a debt or fraud agreement needs disclosure_delay_days (whole days, 0 or more)"}
	statistics := fixtures.with_agreement({"purpose": "STATISTICS", "disclosure_delay_days": 1.5})
	problems(statistics) == {"agreement fraud-pilot: disclosure_delay_days must be whole days, 0 or more"}
}

test_other_purposes_need_no_pilot_terms_or_delay if {
	reg := json.patch(fixtures.without_terms(["pilot", "business_case", "evaluation_date", "disclosure_delay_days"]), [{
		"op": "add", "path": ["agreements", "fraud-pilot", "purpose"], "value": "STATISTICS",
	}])
	count(problems(reg)) == 0
}
