package concordat.common.tests.purposes

import rego.v1

import data.concordat.common.tests.fixtures

psd_register(objective) := fixtures.with_agreement({"purpose": "PUBLIC_SERVICE_DELIVERY", "objective": objective})

psd_request := fixtures.with_request({"purpose": "PUBLIC_SERVICE_DELIVERY"})

test_psd_for_an_objective_this_administration_set_is_allowed if {
	fixtures.decide(psd_request, psd_register("fuel-poverty")).allow
}

test_psd_for_an_objective_this_administration_did_not_set_is_denied if {
	d := fixtures.decide(psd_request, psd_register("tv-retuning"))
	d.rule == "common.psd_objective_not_listed"
}

civil_registration_register(provider) := fixtures.with_agreement({
	"purpose": "CIVIL_REGISTRATION",
	"parties": ["requester@alpha", provider],
	"provider": provider,
	"record_types": {"BIRTH_REGISTRATION": ["registration_id", "given_name"], "BENEFIT_AWARD": ["nino"]},
})

civil_registration_request(record_type, fields) := fixtures.with_request({
	"purpose": "CIVIL_REGISTRATION",
	"record_type": record_type,
	"fields": fields,
	"field_sensitivity": {"registration_id": "PERSONAL", "nino": "PERSONAL"},
})

test_registrar_discloses_a_birth_registration if {
	req := civil_registration_request("BIRTH_REGISTRATION", ["registration_id"])
	d := fixtures.decide(req, civil_registration_register("registrar@beta"))
	d.allow
	d.fields == ["registration_id"]
}

test_civil_registration_releases_only_registration_records if {
	req := civil_registration_request("BENEFIT_AWARD", ["nino"])
	d := fixtures.decide(req, civil_registration_register("registrar@beta"))
	d.rule == "common.civil_registration_record_type"
}

test_civil_registration_provider_must_be_a_registrar if {
	req := civil_registration_request("BIRTH_REGISTRATION", ["registration_id"])
	d := fixtures.decide(req, civil_registration_register("provider@beta"))
	d.rule == "common.civil_registration_provider_not_registrar"
}

research_register(project, provider) := fixtures.with_agreement({
	"purpose": "RESEARCH",
	"parties": ["researcher@alpha", provider],
	"provider": provider,
	"accredited_project": project,
	"bulk": true,
})

research_request(accreditations) := object.union(
	fixtures.with_requester("researcher", accreditations),
	{"purpose": "RESEARCH", "bulk": true},
)

test_accredited_research_gets_de_identified_pseudonymised_data if {
	d := fixtures.decide(research_request(["accredited-researcher"]), research_register("P-1", "provider@beta"))
	d.allow
	d.fields == ["benefit"]
	d.pseudonymise == true
	some o in d.obligations
	o.code == "secure-setting"
	o.parameters.project == "P-1"
}

test_research_needs_an_accredited_researcher if {
	d := fixtures.decide(research_request([]), research_register("P-1", "provider@beta"))
	d.rule == "common.research_requester_not_accredited"
}

test_research_needs_a_project_whose_accreditation_is_current if {
	d := fixtures.decide(research_request(["accredited-researcher"]), research_register("P-lapsed", "provider@beta"))
	d.rule == "common.research_project_not_accredited"
}

test_research_needs_a_registered_project if {
	d := fixtures.decide(research_request(["accredited-researcher"]), research_register("P-9", "provider@beta"))
	d.rule == "common.research_project_not_accredited"
}

test_research_gateway_excludes_health_and_care_bodies if {
	d := fixtures.decide(research_request(["accredited-researcher"]), research_register("P-1", "clinic@beta"))
	d.rule == "common.research_health_body_excluded"
}

statistics_register := fixtures.with_agreement({
	"purpose": "STATISTICS",
	"parties": ["statistician@alpha", "requester@alpha", "provider@beta"],
})

test_statistics_authority_gets_data_for_official_statistics if {
	req := object.union(fixtures.with_requester("statistician", []), {"purpose": "STATISTICS"})
	d := fixtures.decide(req, statistics_register)
	d.allow
	some o in d.obligations
	o.code == "statistics-only"
}

test_statistics_purpose_is_only_for_a_statistics_authority if {
	d := fixtures.decide(fixtures.with_request({"purpose": "STATISTICS"}), statistics_register)
	d.rule == "common.statistics_requester_not_authority"
}

# A missing term or value fails the check that reads it (on OPA too: see policies/README.md).
test_psd_agreement_without_an_objective_is_denied if {
	reg := fixtures.with_agreement({"purpose": "PUBLIC_SERVICE_DELIVERY"})
	fixtures.decide(psd_request, reg).rule == "common.psd_objective_not_listed"
}

test_civil_registration_request_without_a_record_type_is_denied if {
	req := fixtures.without(civil_registration_request("BIRTH_REGISTRATION", ["registration_id"]), [["record_type"]])
	"common.civil_registration_record_type" in fixtures.failing(req, civil_registration_register("registrar@beta"))
}

test_civil_registration_provider_missing_from_the_register_is_not_a_registrar if {
	req := civil_registration_request("BIRTH_REGISTRATION", ["registration_id"])
	reg := civil_registration_register("stranger@beta")
	"common.civil_registration_provider_not_registrar" in fixtures.failing(req, reg)
}

test_researcher_without_accreditations_is_denied if {
	req := fixtures.without(research_request(["accredited-researcher"]), [["requester", "accreditations"]])
	d := fixtures.decide(req, research_register("P-1", "provider@beta"))
	d.rule == "common.research_requester_not_accredited"
}

test_research_request_without_identifying_fields_releases_nothing if {
	req := fixtures.without(research_request(["accredited-researcher"]), [["identifying_fields"]])
	d := fixtures.decide(req, research_register("P-1", "provider@beta"))
	d.reasons == ["common.request_malformed", "common.no_fields_releasable"]
}

test_statistics_request_without_a_requester_is_denied if {
	req := object.union(fixtures.with_requester("statistician", []), {"purpose": "STATISTICS"})
	failing := fixtures.failing(fixtures.without(req, [["requester", "organisation"]]), statistics_register)
	"common.statistics_requester_not_authority" in failing
}
