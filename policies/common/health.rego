# Health and care records and other special category data (UK GDPR art. 9) need the
# extra safeguards of the Caldicott principles: a justified purpose recorded in an
# agreement that says it covers special category data, and never the research gateway,
# whose chapter excludes health and social care bodies' data.
package concordat.common.health

import rego.v1

import data.concordat.common.register
import data.concordat.common.release
import data.concordat.common.request

# An object of `true`s, asked `known_sensitivities[s]`, because every field that would be
# released is looked up in it: rego-cpp reads a key in place, where `s in a_list` is a
# builtin call, and each builtin call costs several microseconds late in a decision.
known_sensitivities := {"PUBLIC": true, "PERSONAL": true}

# A health summary is health data whichever of its fields are asked for. Another record
# becomes special category if a field that would be released is special category, or has
# no known sensitivity at all.
#
# Three rules ask; the default makes the answer `false` rather than undefined, which
# rego-cpp remembers for the rest of the decision instead of working out again each time.
default special_category := false

special_category if request.record_type == "HEALTH_SUMMARY"

special_category if not sensitivities_known

# `every`, not `some field ...; not known_sensitivities[request.field_sensitivity[field]]`:
# OPA looks up a field's sensitivity before a `not` written around the lookup, so a field
# without one left the `not` undefined and the field out of special category. Asked in
# its own rule, the lookup is undefined inside `every` on both engines, as it should be.
sensitivities_known if {
	every field in release.agreed_fields {
		known_sensitivities[request.field_sensitivity[field]]
	}
}

failures contains "common.special_category_not_agreed" if {
	special_category
	not register.agreement.special_category == true
}

failures contains "common.special_category_research_excluded" if {
	special_category
	request.purpose == "RESEARCH"
}
