package concordat.common.tests.health

import rego.v1

import data.concordat.common.tests.fixtures

health_register(special_category) := fixtures.with_agreement({
	"record_types": {"HEALTH_SUMMARY": ["nhs_number", "gp_practice", "conditions"]},
	"special_category": special_category,
})

health_request := fixtures.with_request({
	"record_type": "HEALTH_SUMMARY",
	"subject_kind": "nhs_number",
	"fields": ["gp_practice", "conditions"],
	"field_sensitivity": {"gp_practice": "PERSONAL", "conditions": "SPECIAL_CATEGORY"},
	"identifying_fields": [],
})

test_health_summary_needs_a_special_category_agreement if {
	d := fixtures.decide(health_request, health_register(false))
	d.rule == "common.special_category_not_agreed"
}

test_health_summary_under_a_special_category_agreement_carries_caldicott if {
	d := fixtures.decide(health_request, health_register(true))
	d.allow
	some o in d.obligations
	o.code == "caldicott-need-to-know"
	o.parameters.lawful_basis == "UK GDPR art. 6(1)(e)"
}

# A field whose sensitivity the request does not say is treated as special category.
test_request_without_field_sensitivities_needs_a_special_category_agreement if {
	req := object.remove(fixtures.request, ["field_sensitivity"])
	fixtures.decide(req, fixtures.register).rule == "common.special_category_not_agreed"
	fixtures.decide(req, fixtures.with_agreement({"special_category": true})).allow
}

test_special_category_field_of_another_record_needs_a_special_category_agreement if {
	reg := fixtures.with_agreement({"record_types": {"BENEFIT_AWARD": ["benefit", "medical_grounds"]}})
	req := fixtures.with_request({
		"fields": ["benefit", "medical_grounds"],
		"field_sensitivity": {"benefit": "PERSONAL", "medical_grounds": "SPECIAL_CATEGORY"},
	})
	fixtures.decide(req, reg).rule == "common.special_category_not_agreed"
}

test_field_of_unknown_sensitivity_is_treated_as_special_category if {
	reg := fixtures.with_agreement({"record_types": {"BENEFIT_AWARD": ["benefit", "notes"]}})
	req := fixtures.with_request({"fields": ["benefit", "notes"], "field_sensitivity": {"benefit": "PERSONAL"}})
	fixtures.decide(req, reg).rule == "common.special_category_not_agreed"
}

test_special_category_field_the_agreement_does_not_cover_is_simply_not_released if {
	req := fixtures.with_request({
		"fields": ["benefit", "cause_of_death"],
		"field_sensitivity": {"benefit": "PERSONAL", "cause_of_death": "SPECIAL_CATEGORY"},
	})
	d := fixtures.decide(req, fixtures.register)
	d.allow
	d.fields == ["benefit"]
}

test_health_data_is_never_released_for_research if {
	reg := fixtures.with_agreement({
		"purpose": "RESEARCH",
		"parties": ["researcher@alpha", "provider@beta"],
		"accredited_project": "P-1",
		"record_types": {"HEALTH_SUMMARY": ["gp_practice", "conditions"]},
		"special_category": true,
	})
	req := object.union(fixtures.with_requester("researcher", ["accredited-researcher"]), {
		"purpose": "RESEARCH",
		"record_type": "HEALTH_SUMMARY",
		"fields": ["gp_practice", "conditions"],
		"field_sensitivity": {"gp_practice": "PERSONAL", "conditions": "SPECIAL_CATEGORY"},
		"identifying_fields": [],
	})
	fixtures.decide(req, reg).rule == "common.special_category_research_excluded"
}
