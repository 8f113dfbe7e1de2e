package concordat.common.tests.decision

import rego.v1

import data.concordat.common.decision
import data.concordat.common.tests.fixtures

test_denial_names_the_first_failing_check_and_lists_the_rest_in_order if {
	req := fixtures.with_request({"today": "2028-01-01", "purpose": "DEBT"})
	d := fixtures.decide(req, fixtures.register)
	d.rule == "common.agreement_expired"
	d.reasons == ["common.agreement_expired", "common.agreement_review_overdue", "common.purpose_mismatch"]
}

test_denial_releases_nothing if {
	d := fixtures.decide(fixtures.with_request({"purpose": "DEBT"}), fixtures.register)
	d.fields == []
	d.withheld == {}
	d.obligations == []
	d.pseudonymise == false
}

test_denial_withholds_nothing_by_name_even_for_unagreed_fields if {
	req := fixtures.with_request({"purpose": "DEBT", "fields": ["nino", "address_line"]})
	d := fixtures.decide(req, fixtures.register)
	not d.allow
	d.withheld == {}
}

test_failure_missing_from_the_order_still_denies if {
	d := decision.make("fixture.allow", ["common.agreement_expired"], {"local.forgotten"})
	not d.allow
	d.rule == "local.forgotten"
}

test_denial_echoes_only_a_string_agreement_id if {
	d := fixtures.decide(fixtures.with_request({"agreement_id": 7}), fixtures.register)
	not d.allow
	d.agreement_id == ""
}
