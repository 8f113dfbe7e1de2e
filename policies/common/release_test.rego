package concordat.common.tests.release

import rego.v1

import data.concordat.common.tests.fixtures

test_only_requested_fields_the_agreement_lists_are_released if {
	req := fixtures.with_request({
		"fields": ["status", "nino", "address_line"],
		"field_sensitivity": {"status": "PERSONAL", "nino": "PERSONAL", "address_line": "PERSONAL"},
	})
	fixtures.decide(req, fixtures.register).fields == ["nino", "status"]
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
