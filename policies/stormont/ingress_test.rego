package concordat.tests.ingress

import rego.v1

import data.concordat.common.tests.requests

allowed := "stormont.ingress.allow_under_agreement"

test_dfc_discloses_benefit_awards_to_dwp_to_fight_fraud if {
	req := requests.request("ingress", "fraud-dwp-dfc-benefits-2026", "dwp@whitehall", ["nino", "benefit", "weekly_amount_pence"])
	d := requests.decide(req)
	d.rule == allowed
	d.fields == ["benefit", "nino", "weekly_amount_pence"]
}

test_groni_discloses_a_death_registration_to_dfc if {
	req := requests.request("ingress", "cr-dfc-groni-deaths-2026", "dfc-ni@stormont", ["nino", "cause_of_death"])
	d := requests.decide(req)
	d.rule == allowed
	d.fields == ["nino"]
	d.withheld == {"cause_of_death": "common.field_not_in_agreement"}
}

test_groni_discloses_death_statistics_to_ons if {
	req := requests.request("ingress", "stats-ons-groni-deaths-2026", "ons@whitehall", ["date_of_death", "cause_of_death", "given_name"])
	d := requests.decide(req)
	d.rule == allowed
	d.fields == ["cause_of_death", "date_of_death"]
	d.withheld == {"given_name": "common.field_not_in_agreement"}
	requests.obligation_codes(d) == ["no-onward-disclosure", "retain-max-days", "caldicott-need-to-know", "statistics-only"]
}

test_public_service_delivery_disclosure_is_refused if {
	req := requests.request("ingress", "psd-dfc-dwp-fuel-poverty-2026", "dfc-ni@stormont", ["nino"])
	d := object.union(req, {"node": "stormont", "providing_node": "stormont"})
	requests.decide(d).rule == "stormont.psd_not_available"
}

test_suspended_fraud_pilot_partner_gets_nothing if {
	req := requests.request("ingress", "fraud-fpp-dfc-benefits-2026", "fraud-pilot-partner@whitehall", ["nino"])
	requests.decide(req).rule == "common.requester_not_fit_and_proper"
}
