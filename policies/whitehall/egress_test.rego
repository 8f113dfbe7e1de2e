package concordat.tests.egress

import rego.v1

import data.concordat.common.tests.requests

allowed := "whitehall.egress.allow_under_agreement"

test_dwp_may_ask_nrs_for_a_birth_registration if {
	req := requests.request("egress", "cr-dwp-nrs-births-2026", "dwp@whitehall", ["registration_id", "given_name", "place_of_birth"])
	d := requests.decide(req)
	d.allow
	d.rule == allowed
	d.fields == ["given_name", "registration_id"]
	d.withheld == {"place_of_birth": "common.field_not_in_agreement"}
	requests.obligation_codes(d) == ["no-onward-disclosure", "retain-max-days"]
}

test_dwp_may_ask_gro_for_a_death_registration if {
	req := requests.request("egress", "cr-dwp-gro-deaths-2026", "dwp@whitehall", ["nino", "date_of_death"])
	d := requests.decide(req)
	d.rule == allowed
	d.withheld == {}
}

test_dwp_may_ask_dfc_for_a_benefit_award_to_fight_fraud if {
	req := requests.request("egress", "fraud-dwp-dfc-benefits-2026", "dwp@whitehall", ["nino", "benefit", "status"])
	requests.decide(req).rule == allowed
}

test_hmrc_may_ask_cardiff_council_for_council_tax_debt if {
	req := requests.request("egress", "debt-hmrc-cardiff-council-ctax-2026", "hmrc@whitehall", ["account_ref", "arrears_pence"])
	requests.decide(req).rule == allowed
}

test_ons_may_ask_groni_for_death_statistics_with_caldicott_safeguards if {
	req := requests.request("egress", "stats-ons-groni-deaths-2026", "ons@whitehall", ["date_of_death", "cause_of_death"])
	d := requests.decide(req)
	d.rule == allowed
	requests.obligation_codes(d) == ["no-onward-disclosure", "retain-max-days", "caldicott-need-to-know", "statistics-only"]
}

test_expired_fraud_agreement_with_social_security_scotland_is_denied if {
	req := requests.request("egress", "fraud-dwp-sss-benefits-2023", "dwp@whitehall", ["nino", "benefit"])
	d := requests.decide(req)
	not d.allow
	d.rule == "common.agreement_expired"
}

test_suspended_fraud_pilot_partner_is_denied if {
	req := requests.request("egress", "fraud-fpp-dfc-benefits-2026", "fraud-pilot-partner@whitehall", ["nino"])
	requests.decide(req).rule == "common.requester_not_fit_and_proper"
}

test_body_may_not_use_an_agreement_it_is_not_party_to if {
	req := requests.request("egress", "debt-hmrc-cardiff-council-ctax-2026", "dwp@whitehall", ["account_ref"])
	requests.decide(req).rule == "common.requester_not_party"
}

test_whitehall_does_not_ask_on_behalf_of_a_scottish_body if {
	req := requests.request("egress", "cr-dwp-nrs-births-2026", "dwp@whitehall", ["registration_id"])
	foreign := object.union(req, {"requester": object.union(req.requester, {"administration": "holyrood"})})
	requests.decide(foreign).rule == "common.requester_administration_mismatch"
}
