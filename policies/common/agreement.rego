# Checks on the cited agreement: it is registered, complete, active, in date, for this
# purpose and record type. The codes of practice for every DEA 2017 Part 5 gateway
# require a registered agreement naming the bodies, purpose, data items and duration.
package concordat.common.agreement

import rego.v1

import data.concordat.common.register
import data.concordat.common.release
import data.concordat.common.request

# Debt (s.48) and fraud (s.56) disclosures run as pilots whose review dates the codes of
# practice make binding, so an overdue review stops the exchange. (A list, not a set: see
# `purposes` in request.rego.)
review_purposes := ["DEBT", "FRAUD"]

# The obligations that travel with an allow are built from these fields, so an entry
# missing one would release data without them. Other fields fail their own checks when
# missing; the register check (register_check_problems_test.rego) checks the whole entry
# whenever the bundle is tested.
well_formed if {
	a := register.agreement
	is_string(a.power)
	is_string(a.onward_disclosure)
	is_string(a.lawful_basis)
	days := a.retention_days
	is_number(days)
	days > 0
}

failures contains "common.agreement_unknown" if not registered

# What `not register.agreement` would test (an entry under the id that is not `false`),
# asked by type first: rego-cpp tests an object's truth by comparing the whole object
# with `false` (about 30 µs for an agreement). `else`: an object is never compared.
registered := true if {
	is_object(register.agreement)
} else := true if {
	register.agreement != false
}

failures contains "common.agreement_malformed" if not well_formed

# Suspended and ended agreements stop at once, whatever their dates say.
failures contains "common.agreement_not_active" if not register.agreement.status == "active"

# An ended agreement is named as such, ahead of `agreement_not_active`, so that a denial
# tells an operator the agreement is over rather than paused.
failures contains "common.agreement_ended" if register.agreement.status == "ended"

# A comparison or builtin call that reads a value which may be missing is asked in a rule
# of its own and that rule negated: OPA evaluates the operands of a negated call before
# the negation, so `not a.start <= today` is undefined, not true, when `a.start` is
# missing (policies/README.md, "Where OPA and rego-cpp disagreed").
failures contains "common.agreement_not_started" if not started

# Each date is compared only when it is a string, like the day (see `today` in request.rego).
started if {
	start := register.agreement.start
	is_string(start)
	start <= register.today
}

failures contains "common.agreement_expired" if not unexpired

unexpired if {
	end := register.agreement.end
	is_string(end)
	register.today <= end
}

failures contains "common.agreement_review_overdue" if review_overdue

review_overdue if {
	request.purpose in review_purposes
	not reviewed_in_time
}

reviewed_in_time if {
	review := register.agreement.review
	is_string(review)
	register.today <= review
}

# A request names one purpose; the agreement must be registered for that purpose.
failures contains "common.purpose_mismatch" if not register.agreement.purpose == request.purpose

failures contains "common.record_type_not_covered" if not record_type_covered

# The agreement's fields for the record type, looked up once per decision for the release.
record_type_covered if is_array(release.agreement_fields)

# Bulk extracts need an agreement that says so: one-off lookups versus ongoing extracts
# is one of the terms the register records.
failures contains "common.bulk_not_agreed" if bulk_not_agreed

bulk_not_agreed if {
	request.bulk == true
	not register.agreement.bulk == true
}
