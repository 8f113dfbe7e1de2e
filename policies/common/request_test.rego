package concordat.common.tests.request

import rego.v1

import data.concordat.common.tests.fixtures

test_request_without_identifying_fields_is_malformed if {
	req := object.remove(fixtures.request, ["identifying_fields"])
	fixtures.decide(req, fixtures.register).rule == "common.request_malformed"
}

test_request_whose_now_is_not_a_date_is_malformed if {
	d := fixtures.decide(fixtures.with_request({"today": "2027"}), fixtures.register)
	d.rule == "common.request_malformed"
}

test_empty_request_is_denied_as_malformed if {
	d := fixtures.decide_as({}, fixtures.register, "egress")
	not d.allow
	d.rule == "common.request_malformed"
	d.agreement_id == ""
}

test_decision_for_the_other_direction_is_denied if {
	d := fixtures.decide_as(fixtures.request, fixtures.register, "ingress")
	d.rule == "common.direction_mismatch"
}

test_egress_is_decided_only_by_the_requesting_node if {
	d := fixtures.decide(fixtures.with_request({"node": "beta"}), fixtures.register)
	d.rule == "common.not_deciding_node"
}

test_node_decides_only_with_its_own_register if {
	reg := json.patch(fixtures.register, [{"op": "add", "path": "/administration", "value": "beta"}])
	fixtures.decide(fixtures.request, reg).rule == "common.not_deciding_node"
}

test_ingress_is_decided_by_the_providing_node if {
	reg := json.patch(fixtures.register, [{"op": "add", "path": "/administration", "value": "beta"}])
	req := fixtures.with_request({"direction": "ingress", "node": "beta"})
	fixtures.decide(req, reg).allow
}

test_requester_must_belong_to_the_requesting_node if {
	req := object.union(fixtures.request, {"requester": object.union(fixtures.request.requester, {"administration": "beta"})})
	fixtures.decide(req, fixtures.register).rule == "common.requester_administration_mismatch"
}

test_unknown_purpose_is_denied if {
	d := fixtures.decide(fixtures.with_request({"purpose": "MARKETING"}), fixtures.register)
	d.rule == "common.purpose_unknown"
}

test_request_without_a_purpose_is_denied_as_an_unknown_purpose if {
	d := fixtures.decide(fixtures.without(fixtures.request, [["purpose"]]), fixtures.register)
	d.rule == "common.purpose_unknown"
	"common.no_fields_releasable" in d.reasons
}

test_request_whose_day_is_not_a_string_is_malformed_and_in_no_agreement_s_term if {
	d := fixtures.decide(fixtures.with_request({"today": 20261121}), fixtures.register)
	d.rule == "common.request_malformed"
	"common.agreement_not_started" in d.reasons
	"common.agreement_expired" in d.reasons
}
