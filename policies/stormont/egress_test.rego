package concordat.tests.egress

import rego.v1

import data.concordat.common.tests.requests

test_public_service_delivery_is_refused_before_any_other_check if {
	req := requests.request("egress", "psd-dfc-dwp-fuel-poverty-2026", "dfc-ni@stormont", ["nino", "benefit"])
	d := requests.decide(req)
	not d.allow
	d.rule == "stormont.psd_not_available"
	d.reasons == ["stormont.psd_not_available", "common.psd_objective_not_listed"]
}

test_dfc_may_ask_groni_for_a_death_registration if {
	req := requests.request("egress", "cr-dfc-groni-deaths-2026", "dfc-ni@stormont", ["nino", "date_of_death", "place_of_death"])
	d := requests.decide(req)
	d.rule == "stormont.egress.allow_under_agreement"
	d.fields == ["date_of_death", "nino"]
	d.withheld == {"place_of_death": "common.field_not_in_agreement"}
}

# DEA 2017 Part 5 chapters 3 (debt) and 4 (fraud) are not in force in Northern Ireland
# (local.rego): the Department for Communities may not ask under s.48, whoever provides.
test_dfc_may_not_ask_under_the_dea_debt_gateway if {
	req := requests.request("egress", "debt-dfc-cardiff-council-ctax-2026", "dfc-ni@stormont", ["account_ref", "arrears_pence"])
	d := requests.decide(req)
	not d.allow
	d.rule == "stormont.dea_gateway_not_in_force"
	d.reasons == ["stormont.dea_gateway_not_in_force"]
}

test_dfc_may_not_ask_under_the_dea_fraud_gateway if {
	req := requests.request("egress", "fraud-dfc-dwp-benefits-2026", "dfc-ni@stormont", ["nino", "benefit"])
	register := requests.with_term("fraud-dfc-dwp-benefits-2026", "power", "DEA 2017 s.56")
	requests.decide_with(req, register).rule == "stormont.dea_gateway_not_in_force"
}

test_dfc_may_ask_dwp_about_benefit_fraud_under_social_security_law if {
	req := requests.request("egress", "fraud-dfc-dwp-benefits-2026", "dfc-ni@stormont", ["nino", "benefit"])
	d := requests.decide(req)
	d.rule == "stormont.egress.allow_under_agreement"
	d.fields == ["benefit", "nino"]
}

# The research chapter is in force in Northern Ireland.
test_an_accredited_northern_ireland_researcher_may_ask_for_de_identified_council_tax if {
	req := requests.request("egress", "research-adrni-cardiff-council-ctax-2026", "adr-ni@stormont", ["uprn", "band", "arrears_pence"])
	d := requests.decide(requests.accredited(req))
	d.rule == "stormont.egress.allow_under_agreement"
	d.fields == ["arrears_pence", "band"]
}
