# What an allowed request releases: the fields asked for that the agreement lists for
# the record type (Caldicott: the minimum necessary), less any identifying field when
# the release is for research, which DEA 2017 s.64 requires to be de-identified.
package concordat.common.release

import rego.v1

import data.concordat.common.register
import data.concordat.common.request.req

# Bound once: rego-cpp re-evaluates a reference written inside a comprehension for every
# element.
agreement_fields := register.agreement.record_types[req.record_type]

agreed_fields := [field | some field in req.fields; field in agreement_fields]

# Sorted so both engines and every node list fields alike.
fields := sort(agreed_fields) if req.purpose != "RESEARCH"

fields := sort([field | some field in agreed_fields; not field in req.identifying_fields]) if {
	req.purpose == "RESEARCH"
}

# Research releases carry a pseudonym instead of the subject's identifiers.
pseudonymise := req.purpose == "RESEARCH"

failures contains "common.no_fields_releasable" if not count(fields) > 0
