package concordat.tests.egress

import rego.v1

import data.concordat.common.tests.requests

allowed := "cardiff.egress.allow_under_agreement"

test_cardiff_council_may_ask_gro_for_a_death_registration if {
	req := requests.request("egress", "cr-cardiff-council-gro-deaths-2026", "cardiff-council@cardiff", ["nino", "date_of_death", "cause_of_death"])
	d := requests.decide(req)
	d.rule == allowed
	d.fields == ["date_of_death", "nino"]
	d.withheld == {"cause_of_death": "common.field_not_in_agreement"}
	"30" == [o.parameters.days | some o in d.obligations; o.code == "retain-max-days"][0]
}

test_cardiff_council_may_ask_dwp_about_fuel_poverty if {
	req := requests.request("egress", "psd-cardiff-council-dwp-fuel-poverty-2026", "cardiff-council@cardiff", ["nino", "benefit"])
	requests.decide(req).rule == allowed
}

test_agreement_without_a_waspi_protocol_is_refused if {
	register := requests.with_term("cr-cardiff-council-gro-deaths-2026", "isp_reference", "")
	req := requests.request("egress", "cr-cardiff-council-gro-deaths-2026", "cardiff-council@cardiff", ["nino"])
	requests.decide_with(req, register).rule == "cardiff.waspi_protocol_missing"
}
