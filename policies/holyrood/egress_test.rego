package concordat.tests.egress

import rego.v1

import data.concordat.common.tests.requests

allowed := "holyrood.egress.allow_under_agreement"

test_social_security_scotland_may_ask_for_a_health_summary if {
	req := requests.request("egress", "psd-sss-nhs-scotland-health-2026", "social-security-scotland@holyrood", ["chi_number", "conditions", "allergies"])
	d := requests.decide(req)
	d.rule == allowed
	d.fields == ["chi_number", "conditions"]
	d.withheld == {"allergies": "common.field_not_in_agreement"}
	"caldicott-need-to-know" in requests.obligation_codes(d)
}

test_accredited_researcher_gets_pseudonymised_benefit_data if {
	req := requests.accredited(requests.request("egress", "research-adrs-sss-benefits-2026", "adr-scotland@holyrood", ["nino", "benefit", "weekly_amount_pence"]))
	d := requests.decide(req)
	d.rule == allowed
	d.fields == ["benefit", "weekly_amount_pence"]
	d.withheld == {"nino": "common.research_identifying_field"}
	d.pseudonymise == true
}

test_researcher_without_accreditation_is_denied if {
	req := requests.request("egress", "research-adrs-sss-benefits-2026", "adr-scotland@holyrood", ["benefit"])
	requests.decide(req).rule == "common.research_requester_not_accredited"
}
