# A small register and request for testing the common library on its own: one fraud
# agreement between a requester in "alpha" and a provider in "beta". Tests change one
# thing at a time and replace whole values, never merge nested objects, because
# object.union merges recursively in OPA but not in rego-cpp.
package concordat.common.tests.fixtures

import rego.v1

import data.concordat.common.checks
import data.concordat.common.decision

listed := ["PUBLIC_SERVICE_DELIVERY", "DEBT", "FRAUD"]

agreement := {
	"id": "fraud-pilot",
	"parties": ["requester@alpha", "provider@beta"],
	"provider": "provider@beta",
	"purpose": "FRAUD",
	"power": "DEA 2017 s.56",
	"lawful_basis": "UK GDPR art. 6(1)(e)",
	"record_types": {"BENEFIT_AWARD": ["nino", "benefit", "status"]},
	"special_category": false,
	"bulk": false,
	"start": "2026-01-01",
	"end": "2027-12-31",
	"review": "2027-06-30",
	"retention_days": 90,
	"onward_disclosure": "none",
	"status": "active",
	"name": "Requester and provider: benefit awards (fraud)",
	"purpose_description": "The provider discloses benefit awards to the requester to detect fraud.",
	"benefits": "Public money protected.",
	"information_disclosed": "benefit awards: nino, benefit, status",
	"controllers": ["requester@alpha", "provider@beta"],
	"processors": [],
	"method_of_sharing": "Concordat single-record requests",
	"contact": "data-sharing@provider.example",
	"areas_covered": ["Beta"],
	"pilot": true,
	"business_case": "Agreed by both parties on 2025-12-01.",
	"evaluation_date": "2027-03-31",
	"disclosure_delay_days": 90,
}

register := {
	"administration": "alpha",
	"objectives": ["fuel-poverty"],
	"statistics_authorities": ["statistician@alpha"],
	"accredited_projects": {
		"P-1": {"title": "Benefit take-up", "status": "active", "expires": "2027-12-31"},
		"P-lapsed": {"title": "Earlier study", "status": "active", "expires": "2026-06-30"},
	},
	"bodies": {
		"requester@alpha": body(listed, []),
		"provider@beta": body(listed, []),
		"unlisted@alpha": body([], []),
		"suspended@alpha": object.union(body(listed, []), {"status": "suspended"}),
		"registrar@beta": body([], ["registrar"]),
		"clinic@beta": body(listed, ["health-and-care"]),
		"statistician@alpha": body([], ["statistics-authority"]),
		"researcher@alpha": body([], ["research"]),
	},
	"agreements": {"fraud-pilot": agreement},
}

body(listed_for, roles) := {"name": "Fixture body", "status": "active", "listed_for": listed_for, "roles": roles}

request := {
	"direction": "egress",
	"node": "alpha",
	"requesting_node": "alpha",
	"providing_node": "beta",
	"requester": {
		"organisation": "requester",
		"system": "case-system",
		"administration": "alpha",
		"accreditations": [],
	},
	"record_type": "BENEFIT_AWARD",
	"subject_kind": "nino",
	"purpose": "FRAUD",
	"agreement_id": "fraud-pilot",
	"fields": ["nino", "benefit"],
	"field_sensitivity": {"nino": "PERSONAL", "benefit": "PERSONAL"},
	"identifying_fields": ["nino"],
	"bulk": false,
	"today": "2026-11-21",
}

# The fixture register with top-level fields of the agreement replaced.
with_agreement(changes) := json.patch(register, replacements(["agreements", "fraud-pilot"], changes))

with_body(id, changes) := json.patch(register, replacements(["bodies", id], changes))

# The fixture register with terms of the agreement removed, and the request with values
# removed (each a path): what a hand-made input or a faulty register can miss.
without_terms(terms) := json.patch(register, [op |
	some term in terms
	op := {"op": "remove", "path": ["agreements", "fraud-pilot", term]}
])

without(req, paths) := json.patch(req, [{"op": "remove", "path": path} | some path in paths])

# `some key, value in changes` would read more simply, but rego-cpp 1.5 misparses the
# comma inside a comprehension.
replacements(at, changes) := [op |
	some key in object.keys(changes)
	op := {"op": "add", "path": array.concat(at, [key]), "value": changes[key]}
]

with_request(changes) := object.union(request, changes)

with_requester(organisation, accreditations) := object.union(request, {"requester": object.union(
	request.requester,
	{"organisation": organisation, "accreditations": accreditations},
)})

# The decision the common checks alone give, as a jurisdiction without checks of its own.
decide(req, reg) := decide_as(req, reg, req.direction)

decide_as(req, reg, direction) := d if {
	d := decision.make("fixture.allow", checks.order, checks.failures(direction)) with data.concordat.common.request.req as req
		with data.register as reg
}

failing(req, reg) := f if {
	f := checks.failures(req.direction) with data.concordat.common.request.req as req
		with data.register as reg
}
