package concordat.tests.ingress

import rego.v1

import data.concordat.common.tests.requests

allowed := "holyrood.ingress.allow_under_agreement"

test_nrs_discloses_a_birth_registration_to_dwp if {
	req := requests.request("ingress", "cr-dwp-nrs-births-2026", "dwp@whitehall", ["registration_id", "date_of_birth", "mother_family_name"])
	d := requests.decide(req)
	d.rule == allowed
	d.fields == ["date_of_birth", "registration_id"]
	d.withheld == {"mother_family_name": "common.field_not_in_agreement"}
}

test_expired_fraud_agreement_with_dwp_is_denied if {
	req := requests.request("ingress", "fraud-dwp-sss-benefits-2023", "dwp@whitehall", ["nino"])
	requests.decide(req).rule == "common.agreement_expired"
}

test_nhs_scotland_discloses_a_health_summary_under_pbpp_approval if {
	req := requests.request("ingress", "psd-sss-nhs-scotland-health-2026", "social-security-scotland@holyrood", ["chi_number", "medications", "allergies"])
	d := requests.decide(req)
	d.rule == allowed
	d.fields == ["chi_number", "medications"]
	d.withheld == {"allergies": "common.field_not_in_agreement"}
}

test_health_summary_without_pbpp_approval_is_denied if {
	register := requests.with_term("psd-sss-nhs-scotland-health-2026", "pbpp_reference", "")
	req := requests.request("ingress", "psd-sss-nhs-scotland-health-2026", "social-security-scotland@holyrood", ["chi_number"])
	requests.decide_with(req, register).rule == "holyrood.pbpp_approval_missing"
}

test_social_security_scotland_discloses_pseudonymised_research_data if {
	req := requests.accredited(requests.request("ingress", "research-adrs-sss-benefits-2026", "adr-scotland@holyrood", ["nino", "benefit"]))
	d := requests.decide(req)
	d.rule == allowed
	d.fields == ["benefit"]
	d.withheld == {"nino": "common.research_identifying_field"}
	d.pseudonymise == true
	"secure-setting" in requests.obligation_codes(d)
}
