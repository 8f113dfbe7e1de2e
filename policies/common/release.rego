# What an allowed request releases: the fields asked for that the agreement lists for
# the record type (Caldicott: the minimum necessary), less any identifying field when
# the release is for research, which DEA 2017 s.64 requires to be de-identified. Every
# field asked for and not released is named in `withheld` with the rule that withheld it,
# so the requester and the auditor can see why it is missing.
package concordat.common.release

import rego.v1

import data.concordat.common.register
import data.concordat.common.request
import data.concordat.common.request.req

# Bound once: rego-cpp re-evaluates a reference written inside a comprehension for every
# element.
agreement_fields := register.agreement.record_types[request.record_type]

agreed_fields := [field | some field in request.fields; field in agreement_fields]

# Sorted so both engines and every node list fields alike.
fields := sort(agreed_fields) if request.purpose != "RESEARCH"

fields := sort([field | some field in agreed_fields; not field in identifying]) if {
	request.purpose == "RESEARCH"
	identifying := req.identifying_fields
}

# Research releases carry a pseudonym instead of the subject's identifiers.
pseudonymise := request.purpose == "RESEARCH"

failures contains "common.no_fields_releasable" if not releases_fields

# A rule of its own, so that `fields` undefined fails the check on OPA too (see `started`
# in agreement.rego).
releases_fields if count(fields) > 0

# Most requests ask only for fields they may have; they skip the work of naming rules.
default withheld := {}

withheld := withholdings if count(fields) != count(request.fields)

# A withholding is `withholdings[field] := "<rule id>"`. The two below never see the same
# field, so each withheld field has exactly one rule.
withholdings[field] := "common.field_not_in_agreement" if {
	agreed := agreement_fields
	some field in request.fields
	not field in agreed
}

withholdings[field] := "common.research_identifying_field" if {
	request.purpose == "RESEARCH"
	some field in agreed_fields
	field in req.identifying_fields
}
