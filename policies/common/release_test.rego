package concordat.common.tests.release

import rego.v1

import data.concordat.common.obligations
import data.concordat.common.tests.fixtures

test_only_requested_fields_the_agreement_lists_are_released if {
	req := fixtures.with_request({
		"fields": ["status", "nino", "address_line"],
		"field_sensitivity": {"status": "PERSONAL", "nino": "PERSONAL", "address_line": "PERSONAL"},
	})
	fixtures.decide(req, fixtures.register).fields == ["nino", "status"]
}

test_a_field_the_agreement_does_not_list_is_withheld_by_its_rule if {
	req := fixtures.with_request({
		"fields": ["status", "nino", "address_line"],
		"field_sensitivity": {"status": "PERSONAL", "nino": "PERSONAL", "address_line": "PERSONAL"},
	})
	d := fixtures.decide(req, fixtures.register)
	d.allow
	d.withheld == {"address_line": "common.field_not_in_agreement"}
}

test_a_request_for_agreed_fields_only_withholds_nothing if {
	d := fixtures.decide(fixtures.request, fixtures.register)
	d.fields == ["benefit", "nino"]
	d.withheld == {}
}

# Every field asked for is either released or withheld with a rule, never silently dropped.
test_research_withholds_identifying_fields_and_unagreed_ones_each_by_its_rule if {
	reg := fixtures.with_agreement({
		"purpose": "RESEARCH",
		"parties": ["researcher@alpha", "provider@beta"],
		"accredited_project": "P-1",
	})
	req := object.union(fixtures.with_requester("researcher", ["accredited-researcher"]), {
		"purpose": "RESEARCH",
		"fields": ["nino", "benefit", "address_line"],
		"field_sensitivity": {"nino": "PERSONAL", "benefit": "PERSONAL", "address_line": "PERSONAL"},
		"identifying_fields": ["address_line", "nino"],
	})
	d := fixtures.decide(req, reg)
	d.allow
	d.fields == ["benefit"]
	d.withheld == {
		"nino": "common.research_identifying_field",
		"address_line": "common.field_not_in_agreement",
	}
}

test_request_for_no_agreed_field_is_denied if {
	d := fixtures.decide(fixtures.with_request({"fields": ["address_line"]}), fixtures.register)
	d.rule == "common.no_fields_releasable"
}

test_research_request_for_identifying_fields_only_releases_nothing if {
	reg := fixtures.with_agreement({
		"purpose": "RESEARCH",
		"parties": ["researcher@alpha", "provider@beta"],
		"accredited_project": "P-1",
	})
	req := object.union(fixtures.with_requester("researcher", ["accredited-researcher"]), {
		"purpose": "RESEARCH",
		"fields": ["nino"],
	})
	fixtures.decide(req, reg).rule == "common.no_fields_releasable"
}

test_every_release_carries_onward_disclosure_and_retention_obligations if {
	d := fixtures.decide(fixtures.request, fixtures.register)
	d.obligations == [
		{
			"code": "no-onward-disclosure",
			"description": "Do not disclose this data onward except as the agreement permits.",
			"parameters": {"agreement_id": "fraud-pilot", "power": "DEA 2017 s.56", "permitted": "none"},
		},
		{
			"code": "retain-max-days",
			"description": "Delete this data no later than this many days after receipt.",
			"parameters": {"days": "90"},
		},
	]
}

# An obligation naming a term the agreement lacks is left out rather than half built (such
# an agreement is malformed, so this is never an allow's list).
test_obligations_naming_a_missing_term_are_left_out if {
	reg := fixtures.without_terms(["power", "retention_days"])
	o := obligations.obligations with data.concordat.common.request.req as fixtures.request
		with data.register as reg
	o == []
}
