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
