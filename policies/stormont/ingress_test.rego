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
	d := requests.decide(req)
	d.rule == "stormont.dea_gateway_not_in_force"
	"common.requester_not_fit_and_proper" in d.reasons
}

# DEA 2017 s.48 is not in force for Northern Ireland's devolved bodies (local.rego): HMRC's
# node may let the request go, the Department for Communities' node refuses to disclose.
test_dfc_refuses_to_disclose_under_the_dea_debt_gateway if {
	req := requests.request("ingress", "debt-hmrc-dfc-benefits-2026", "hmrc@whitehall", ["nino", "benefit"])
	d := requests.decide(req)
	not d.allow
	d.rule == "stormont.dea_gateway_not_in_force"
	d.reasons == ["stormont.dea_gateway_not_in_force"]
}

test_dfc_refuses_a_fraud_disclosure_whose_agreement_cites_the_dea if {
	req := requests.request("ingress", "fraud-dwp-dfc-benefits-2026", "dwp@whitehall", ["nino", "benefit"])
	register := requests.with_term("fraud-dwp-dfc-benefits-2026", "power", "Digital Economy Act 2017, section 56")
	requests.decide_with(req, register).rule == "stormont.dea_gateway_not_in_force"
}

test_a_debt_or_fraud_agreement_without_a_power_is_refused_as_resting_on_none if {
	req := requests.request("ingress", "fraud-dwp-dfc-benefits-2026", "dwp@whitehall", ["nino"])
	register := requests.with_term("fraud-dwp-dfc-benefits-2026", "power", null)
	d := requests.decide_with(req, register)
	d.rule == "stormont.dea_gateway_not_in_force"
	"common.agreement_malformed" in d.reasons
}

test_an_unknown_fraud_agreement_is_unknown_not_a_dea_refusal if {
	req := requests.request("ingress", "fraud-dwp-dfc-benefits-2026", "dwp@whitehall", ["nino"])
	d := requests.decide(object.union(req, {"agreement_id": "fraud-never-registered"}))
	d.rule == "common.agreement_unknown"
	not "stormont.dea_gateway_not_in_force" in d.reasons
}

test_groni_refuses_under_an_ended_agreement if {
	req := requests.request("ingress", "cr-dwp-groni-deaths-2023", "dwp@whitehall", ["nino", "date_of_death"])
	d := requests.decide(req)
	d.rule == "common.agreement_ended"
	"common.agreement_not_active" in d.reasons
}
