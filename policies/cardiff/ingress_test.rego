package concordat.tests.ingress

import rego.v1

import data.concordat.common.tests.requests

allowed := "cardiff.ingress.allow_under_agreement"

test_cardiff_council_discloses_council_tax_debt_to_hmrc if {
	req := requests.request("ingress", "debt-hmrc-cardiff-council-ctax-2026", "hmrc@whitehall", ["account_ref", "arrears_pence", "band"])
	d := requests.decide(req)
	d.rule == allowed
	d.fields == ["account_ref", "arrears_pence", "band"]
	d.withheld == {}
}

test_nhs_wales_discloses_health_statistics_without_identifiers if {
	req := requests.request("ingress", "stats-ons-nhs-wales-health-2026", "ons@whitehall", ["nhs_number", "conditions", "gp_practice"])
	d := requests.decide(req)
	d.rule == allowed
	d.fields == ["conditions", "gp_practice"]
	d.withheld == {"nhs_number": "common.field_not_in_agreement"}
	"caldicott-need-to-know" in requests.obligation_codes(d)
}

test_disclosure_without_a_waspi_protocol_is_refused if {
	register := requests.with_term("debt-hmrc-cardiff-council-ctax-2026", "isp_reference", "")
	req := requests.request("ingress", "debt-hmrc-cardiff-council-ctax-2026", "hmrc@whitehall", ["account_ref"])
	requests.decide_with(req, register).rule == "cardiff.waspi_protocol_missing"
}

individual_health_summary(case_reference_present) := object.union(
	requests.request("ingress", "stats-ons-nhs-wales-health-2026", "ons@whitehall", ["conditions"]),
	{"bulk": false, "case_reference_present": case_reference_present},
)

test_individual_health_summary_needs_a_case_reference if {
	register := requests.with_term("stats-ons-nhs-wales-health-2026", "bulk", false)
	d := requests.decide_with(individual_health_summary(false), register)
	d.rule == "cardiff.case_reference_required"
}

test_individual_health_summary_with_a_case_reference_is_disclosed if {
	register := requests.with_term("stats-ons-nhs-wales-health-2026", "bulk", false)
	requests.decide_with(individual_health_summary(true), register).rule == allowed
}
