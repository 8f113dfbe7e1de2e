# Every common check, in priority order. A denial names the first failing check in this
# order, so the order is part of what a policy author reviews.
package concordat.common.checks

import rego.v1

import data.concordat.common.agreement
import data.concordat.common.civil_registration
import data.concordat.common.health
import data.concordat.common.parties
import data.concordat.common.psd
import data.concordat.common.release
import data.concordat.common.request
import data.concordat.common.research
import data.concordat.common.statistics

order := [
	"common.request_malformed",
	"common.direction_mismatch",
	"common.not_deciding_node",
	"common.requester_administration_mismatch",
	"common.purpose_unknown",
	"common.agreement_unknown",
	"common.agreement_malformed",
	"common.agreement_ended",
	"common.agreement_not_active",
	"common.agreement_not_started",
	"common.agreement_expired",
	"common.agreement_review_overdue",
	"common.purpose_mismatch",
	"common.record_type_not_covered",
	"common.requester_not_party",
	"common.provider_mismatch",
	"common.requester_not_fit_and_proper",
	"common.provider_not_fit_and_proper",
	"common.body_not_listed_for_purpose",
	"common.bulk_not_agreed",
	"common.psd_objective_not_listed",
	"common.civil_registration_record_type",
	"common.civil_registration_provider_not_registrar",
	"common.research_requester_not_accredited",
	"common.research_project_not_accredited",
	"common.research_health_body_excluded",
	"common.statistics_requester_not_authority",
	"common.special_category_not_agreed",
	"common.special_category_research_excluded",
	"common.no_fields_releasable",
]

independent_failures := union({
	request.failures,
	agreement.failures,
	parties.failures,
	psd.failures,
	civil_registration.failures,
	research.failures,
	statistics.failures,
	health.failures,
	release.failures,
})

failures(direction) := independent_failures | request.direction_failures(direction)
