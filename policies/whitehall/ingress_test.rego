package concordat.tests.ingress

import rego.v1

import data.concordat.common.tests.requests

allowed := "whitehall.ingress.allow_under_agreement"

test_gro_discloses_a_death_registration_to_dwp_without_cause_of_death if {
	req := requests.request("ingress", "cr-dwp-gro-deaths-2026", "dwp@whitehall", ["nino", "date_of_death", "cause_of_death"])
	d := requests.decide(req)
	d.rule == allowed
	d.fields == ["date_of_death", "nino"]
	d.withheld == {"cause_of_death": "common.field_not_in_agreement"}
}

test_gro_discloses_a_death_registration_to_cardiff_council if {
	req := requests.request("ingress", "cr-cardiff-council-gro-deaths-2026", "cardiff-council@cardiff", ["nino", "date_of_death"])
	requests.decide(req).rule == allowed
}

test_dwp_discloses_benefits_to_cardiff_council_for_fuel_poverty if {
	req := requests.request("ingress", "psd-cardiff-council-dwp-fuel-poverty-2026", "cardiff-council@cardiff", ["nino", "benefit"])
	requests.decide(req).rule == allowed
}

# Whitehall's own law allows this disclosure; Stormont's egress refuses to ask (see
# stormont/egress_test.rego). Each side decides independently.
test_dwp_would_disclose_to_dfc_for_fuel_poverty if {
	req := requests.request("ingress", "psd-dfc-dwp-fuel-poverty-2026", "dfc-ni@stormont", ["nino", "benefit"])
	requests.decide(req).rule == allowed
}

test_psd_objective_outside_the_uk_list_is_denied if {
	register := requests.with_term("psd-cardiff-council-dwp-fuel-poverty-2026", "objective", "free-school-meals")
	req := requests.request("ingress", "psd-cardiff-council-dwp-fuel-poverty-2026", "cardiff-council@cardiff", ["nino"])
	requests.decide_with(req, register).rule == "common.psd_objective_not_listed"
}

test_ingress_decision_is_refused_for_data_another_node_provides if {
	req := requests.request("ingress", "fraud-dwp-dfc-benefits-2026", "dwp@whitehall", ["nino"])
	requests.decide(req).rule == "common.not_deciding_node"
}
