package concordat.common.tests.parties

import rego.v1

import data.concordat.common.tests.fixtures

test_requester_outside_the_agreement_is_denied if {
	d := fixtures.decide(fixtures.with_requester("unlisted", []), fixtures.register)
	d.rule == "common.requester_not_party"
}

test_provider_must_sit_behind_the_providing_node if {
	d := fixtures.decide(fixtures.with_request({"providing_node": "gamma"}), fixtures.register)
	d.rule == "common.provider_mismatch"
}

test_suspended_requester_is_denied_at_once if {
	reg := fixtures.with_agreement({"parties": ["suspended@alpha", "provider@beta"]})
	d := fixtures.decide(fixtures.with_requester("suspended", []), reg)
	d.rule == "common.requester_not_fit_and_proper"
}

test_requester_missing_from_the_register_is_not_fit_and_proper if {
	reg := fixtures.with_agreement({"parties": ["stranger@alpha", "provider@beta"]})
	d := fixtures.decide(fixtures.with_requester("stranger", []), reg)
	d.rule == "common.requester_not_fit_and_proper"
}

test_suspended_provider_is_denied_at_once if {
	d := fixtures.decide(fixtures.request, fixtures.with_body("provider@beta", {"status": "suspended"}))
	d.rule == "common.provider_not_fit_and_proper"
}

test_body_not_listed_for_fraud_is_denied if {
	reg := fixtures.with_agreement({"parties": ["unlisted@alpha", "provider@beta"]})
	d := fixtures.decide(fixtures.with_requester("unlisted", []), reg)
	d.rule == "common.body_not_listed_for_purpose"
}

test_requester_without_an_organisation_is_not_a_party if {
	req := fixtures.without(fixtures.request, [["requester", "organisation"]])
	fixtures.decide(req, fixtures.register).rule == "common.requester_not_party"
}
