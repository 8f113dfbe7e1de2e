package concordat.common.tests.agreement

import rego.v1

import data.concordat.common.tests.fixtures

test_fixture_request_is_allowed_with_the_agreed_fields if {
	d := fixtures.decide(fixtures.request, fixtures.register)
	d.allow
	d.rule == "fixture.allow"
	d.agreement_id == "fraud-pilot"
	d.fields == ["benefit", "nino"]
	d.reasons == []
	d.pseudonymise == false
}

test_unknown_agreement_is_denied_with_its_rule if {
	d := fixtures.decide(fixtures.with_request({"agreement_id": "no-such-agreement"}), fixtures.register)
	not d.allow
	d.rule == "common.agreement_unknown"
	d.agreement_id == "no-such-agreement"
}

test_agreement_without_a_power_is_malformed if {
	d := fixtures.decide(fixtures.request, fixtures.with_agreement({"power": 56}))
	d.rule == "common.agreement_malformed"
}

test_agreement_without_a_positive_retention_is_malformed if {
	d := fixtures.decide(fixtures.request, fixtures.with_agreement({"retention_days": 0}))
	d.rule == "common.agreement_malformed"
}

test_suspended_agreement_is_denied_whatever_its_dates if {
	d := fixtures.decide(fixtures.request, fixtures.with_agreement({"status": "suspended"}))
	d.rule == "common.agreement_not_active"
}

test_ended_agreement_is_denied_as_ended_whatever_its_dates if {
	d := fixtures.decide(fixtures.request, fixtures.with_agreement({"status": "ended"}))
	d.rule == "common.agreement_ended"
	"common.agreement_not_active" in d.reasons
}

test_agreement_not_yet_started_is_denied if {
	d := fixtures.decide(fixtures.request, fixtures.with_agreement({"start": "2026-12-01"}))
	d.rule == "common.agreement_not_started"
}

test_expired_agreement_is_denied_with_its_rule if {
	d := fixtures.decide(fixtures.with_request({"today": "2028-01-01"}), fixtures.register)
	d.rule == "common.agreement_expired"
	not d.allow
}

test_agreement_is_in_date_on_its_last_day if {
	reg := fixtures.with_agreement({"end": "2026-11-21", "review": "2026-11-21"})
	fixtures.decide(fixtures.request, reg).allow
}

test_fraud_pilot_past_its_review_date_is_denied if {
	d := fixtures.decide(fixtures.request, fixtures.with_agreement({"review": "2026-11-20"}))
	d.rule == "common.agreement_review_overdue"
}

test_review_date_binds_only_debt_and_fraud_pilots if {
	reg := fixtures.with_agreement({"review": "2026-11-20", "purpose": "CIVIL_REGISTRATION"})
	req := fixtures.with_request({"purpose": "CIVIL_REGISTRATION"})
	not "common.agreement_review_overdue" in fixtures.failing(req, reg)
}

test_purpose_must_be_the_agreement_purpose if {
	d := fixtures.decide(fixtures.with_request({"purpose": "DEBT"}), fixtures.register)
	d.rule == "common.purpose_mismatch"
}

test_record_type_must_be_covered_by_the_agreement if {
	d := fixtures.decide(fixtures.with_request({"record_type": "PERSON"}), fixtures.register)
	d.rule == "common.record_type_not_covered"
}

test_bulk_request_needs_a_bulk_agreement if {
	d := fixtures.decide(fixtures.with_request({"bulk": true}), fixtures.register)
	d.rule == "common.bulk_not_agreed"
}

test_bulk_request_under_a_bulk_agreement_is_allowed if {
	reg := fixtures.with_agreement({"bulk": true})
	fixtures.decide(fixtures.with_request({"bulk": true}), reg).allow
}

# A missing date fails its check rather than passing it (on OPA too: see policies/README.md).
test_agreement_without_its_dates_fails_each_date_check if {
	failing := fixtures.failing(fixtures.request, fixtures.without_terms(["start", "end", "review"]))
	"common.agreement_not_started" in failing
	"common.agreement_expired" in failing
	"common.agreement_review_overdue" in failing
}

test_agreement_without_record_types_does_not_cover_the_record_type if {
	d := fixtures.decide(fixtures.request, fixtures.without_terms(["record_types"]))
	d.rule == "common.record_type_not_covered"
}

test_register_entry_that_is_not_an_object_is_a_malformed_agreement if {
	reg := json.patch(fixtures.register, [{"op": "add", "path": ["agreements", "fraud-pilot"], "value": "fraud-pilot"}])
	d := fixtures.decide(fixtures.request, reg)
	d.rule == "common.agreement_malformed"
}

# A date of another type is not in force: OPA orders numbers before strings and rego-cpp
# after, so an unguarded comparison would decide differently on each engine.
test_agreement_whose_dates_are_not_strings_fails_each_date_check if {
	reg := fixtures.with_agreement({"start": 20260101, "end": 20271231, "review": 20270630})
	failing := fixtures.failing(fixtures.request, reg)
	"common.agreement_not_started" in failing
	"common.agreement_expired" in failing
	"common.agreement_review_overdue" in failing
}
