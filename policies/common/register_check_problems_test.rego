# A whole-register consistency check, evaluated when a bundle is tested rather than on
# every request: each jurisdiction's Rego tests assert it finds no problems, and a node
# runs those tests before it serves a new bundle. `concordat policy test` runs them too.
#
# It lives in a `_test.rego` file so that it is loaded with the tests only: rego-cpp
# compiles every module it is given into the decision bundle, evaluated or not, and each
# decision pays for the bundle's size (this module alone added about 35 µs to every
# decision). Query `data.concordat.common.register_check.problems` with the tests loaded.
package concordat.common.register_check

import rego.v1

import data.concordat.common.register
import data.concordat.common.request

agreement_string_fields := [
	"id", "provider", "purpose", "power", "lawful_basis",
	"start", "end", "review", "onward_disclosure", "status",
]

agreement_date_fields := ["start", "end", "review"]

# The columns of the public DEA register that the codes of practice ask every data
# controller to publish (name, purpose, benefits, legal power, information disclosed,
# controllers, processors, method of sharing, retention, start, end and review dates,
# contact, areas covered). The legal power, retention and dates are the terms above
# (`power`, `retention_days`, `start`, `end`, `review`); these are the rest, in words.
register_text_fields := [
	"name", "purpose_description", "benefits", "information_disclosed",
	"method_of_sharing", "contact",
]

# Debt and fraud sharing starts as a pilot with a business case agreed by all parties and
# an evaluation before it continues (the code of practice for chapters 1, 3 and 4).
pilot_purposes := ["DEBT", "FRAUD"]

# A citizen's "who used my data" view hides an exchange under a debt or fraud agreement
# until this many days have passed (live investigations), so those agreements must say.
delayed_purposes := ["DEBT", "FRAUD"]

agreement_statuses := {"active", "suspended", "ended"}

body_statuses := {"active", "suspended"}

# Party ids are "organisation@administration" (see register.rego).
party_pattern := `^[a-z0-9-]+@[a-z]+$`

date_pattern := `^\d{4}-\d{2}-\d{2}$`

administration := data.register.administration

# The agreements keyed by id, as data.json registers them: read back from the shards the
# bundle loader files them in (gateway/policy/register_shards.py), or as given by a
# fixture register. Built on every evaluation that asks, so only tests use it.
agreements := flat if {
	shards := data.register.agreement_shards
	flat := {id: shards[s][id] | some s in object.keys(shards); some id in object.keys(shards[s])}
} else := data.register.agreements

problems contains sprintf("register: agreement %s is filed in shard %s, not %s", [id, s, register.shard(id)]) if {
	shards := data.register.agreement_shards
	some s in object.keys(shards)
	some id in object.keys(shards[s])
	s != register.shard(id)
}

# Every test of a value that may be missing is a function of its own, negated where it is
# used: OPA evaluates the operands of a negated call before the negation, so
# `not is_string(a.power)` is undefined, not true, when `power` is missing
# (policies/README.md, "Where OPA and rego-cpp disagreed").
string_term(document, key) if is_string(document[key])

list_term(document, key) if is_array(document[key])

object_term(document, key) if is_object(document[key])

boolean_term(document, key) if is_boolean(document[key])

date_term(document, key) if regex.match(date_pattern, document[key])

status_in(document, statuses) if document.status in statuses

problems contains "register: administration must be a string" if {
	not string_term(data.register, "administration")
}

problems contains sprintf("register: %s must be a list", [key]) if {
	some key in ["objectives", "statistics_authorities"]
	not list_term(data.register, key)
}

problems contains "register: agreements must be an object" if not agreements_object

agreements_object if is_object(agreements)

problems contains sprintf("register: %s must be an object", [key]) if {
	some key in ["bodies", "accredited_projects"]
	not object_term(data.register, key)
}

problems contains sprintf("agreement %s: %s must be a string", [id, key]) if {
	some id, a in agreements
	some key in agreement_string_fields
	not string_term(a, key)
}

text_term(document, key) if {
	value := document[key]
	is_string(value)
	value != ""
}

names_term(document, key) if {
	names := document[key]
	is_array(names)
	every name in names {
		is_string(name)
		name != ""
	}
}

some_names_term(document, key) if {
	names_term(document, key)
	count(document[key]) > 0
}

days_term(document, key) if {
	days := document[key]
	is_number(days)
	days >= 0
	round(days) == days
}

problems contains sprintf("agreement %s: register field %s must be a non-empty string", [id, key]) if {
	some id, a in agreements
	some key in register_text_fields
	not text_term(a, key)
}

problems contains sprintf("agreement %s: register field %s must name at least one body or area", [id, key]) if {
	some id, a in agreements
	some key in ["controllers", "areas_covered"]
	not some_names_term(a, key)
}

problems contains sprintf("agreement %s: register field processors must be a list of names (empty if none)", [id]) if {
	some id, a in agreements
	not names_term(a, "processors")
}

problems contains sprintf("agreement %s: controller %s is not one of its parties", [id, controller]) if {
	some id, a in agreements
	some controller in a.controllers
	not controller_is_party(a, controller)
}

controller_is_party(a, controller) if controller in a.parties

problems contains sprintf("agreement %s: a debt or fraud agreement must say whether it is a pilot (pilot: true or false)", [id]) if {
	some id, a in agreements
	a.purpose in pilot_purposes
	not boolean_term(a, "pilot")
}

problems contains sprintf("agreement %s: a debt or fraud agreement needs its business_case", [id]) if {
	some id, a in agreements
	a.purpose in pilot_purposes
	not text_term(a, "business_case")
}

problems contains sprintf("agreement %s: a debt or fraud agreement needs an evaluation_date (an ISO date)", [id]) if {
	some id, a in agreements
	a.purpose in pilot_purposes
	not date_term(a, "evaluation_date")
}

problems contains sprintf("agreement %s: a debt or fraud agreement needs disclosure_delay_days (whole days, 0 or more)", [id]) if {
	some id, a in agreements
	a.purpose in delayed_purposes
	not days_term(a, "disclosure_delay_days")
}

problems contains sprintf("agreement %s: disclosure_delay_days must be whole days, 0 or more", [id]) if {
	some id, a in agreements
	_ = a.disclosure_delay_days
	not delayed(a)
	not days_term(a, "disclosure_delay_days")
}

delayed(a) if a.purpose in delayed_purposes

problems contains sprintf("agreement %s: id does not match its register key", [id]) if {
	some id, a in agreements
	not a.id == id
}

problems contains sprintf("agreement %s: %s is not an ISO date", [id, key]) if {
	some id, a in agreements
	some key in agreement_date_fields
	not date_term(a, key)
}

problems contains sprintf("agreement %s: ends before it starts", [id]) if {
	some id, a in agreements
	a.end < a.start
}

problems contains sprintf("agreement %s: status must be active, suspended or ended", [id]) if {
	some id, a in agreements
	not status_in(a, agreement_statuses)
}

problems contains sprintf("agreement %s: purpose is not a known purpose", [id]) if {
	some id, a in agreements
	not known_purpose(a)
}

known_purpose(a) if a.purpose in request.purposes

problems contains sprintf("agreement %s: %s must be true or false", [id, key]) if {
	some id, a in agreements
	some key in ["special_category", "bulk"]
	not boolean_term(a, key)
}

problems contains sprintf("agreement %s: retention_days must be a positive number", [id]) if {
	some id, a in agreements
	not positive_retention(a)
}

positive_retention(a) if a.retention_days > 0

problems contains sprintf("agreement %s: record_types must map record types to field lists", [id]) if {
	some id, a in agreements
	not record_types_well_formed(a)
}

record_types_well_formed(a) if {
	record_types := a.record_types
	is_object(record_types)
	every fields in record_types {
		is_array(fields)
	}
}

problems contains sprintf("agreement %s: party %s is not organisation@administration", [id, party]) if {
	some id, a in agreements
	some party in a.parties
	not regex.match(party_pattern, party)
}

problems contains sprintf("agreement %s: party %s is not a registered body", [id, party]) if {
	some id, a in agreements
	some party in a.parties
	not data.register.bodies[party]
}

problems contains sprintf("agreement %s: the provider is not one of its parties", [id]) if {
	some id, a in agreements
	not provider_is_party(a)
}

provider_is_party(a) if a.provider in a.parties

# An administration registers only the agreements it is party to.
problems contains sprintf("agreement %s: no party belongs to %s", [id, administration]) if {
	some id, a in agreements
	not own_party(a)
}

own_party(a) if {
	some party in a.parties
	endswith(party, concat("", ["@", administration]))
}

problems contains sprintf("agreement %s: public service delivery needs an objective", [id]) if {
	some id, a in agreements
	a.purpose == "PUBLIC_SERVICE_DELIVERY"
	not string_term(a, "objective")
}

problems contains sprintf("agreement %s: research needs an accredited_project", [id]) if {
	some id, a in agreements
	a.purpose == "RESEARCH"
	not string_term(a, "accredited_project")
}

problems contains sprintf("body %s: status must be active or suspended", [id]) if {
	some id, body in data.register.bodies
	not status_in(body, body_statuses)
}

problems contains sprintf("body %s: %s must be a list", [id, key]) if {
	some id, body in data.register.bodies
	some key in ["listed_for", "roles"]
	not list_term(body, key)
}

problems contains sprintf("body %s: is not organisation@administration", [id]) if {
	some id, _ in data.register.bodies
	not regex.match(party_pattern, id)
}
