# Northern Ireland's own checks, applied in both directions.
#
# Only the research and statistics chapters (5 and 7) of Part 5 of the Digital Economy Act
# 2017 were brought into force in Northern Ireland. Sources:
# - Written ministerial statement, HC Deb 20 March 2018, vol 638 ("Digital Economy Act
#   2017", hansard.parliament.uk/commons/2018-03-20/debates/18032055000014): chapters 5 and
#   7 are brought into force in Northern Ireland as in England, Wales and Scotland; several
#   Part 5 purposes are devolved there, the Assembly could not give legislative consent, and
#   the other chapters were kept to be commenced in Northern Ireland separately.
# - S.I. 2018/382, reg. 3: Part 5's public service delivery chapter (s.35, Sch. 4) in force
#   on 1 May 2018 "for E.W.S." only (legislation.gov.uk, commencement notes to Sch. 4); the
#   debt (ch.3, s.48) and fraud (ch.4, s.56) chapters came into force the same day (Cabinet
#   Office statement on their statutory review, 20 July 2021) and "apply to England, Wales
#   and Scotland" (HMRC Information Disclosure Guide, IDG55390).
# No commencement for Northern Ireland has followed, so a Northern Ireland body can neither
# ask nor disclose under those chapters.
#
# Public service delivery (s.35) also works only for objectives set by the relevant national
# authority; the UK list (SI 2018/912) does not extend to Northern Ireland and no Northern
# Ireland department has set objectives, so Stormont refuses the purpose outright, ahead of
# every other check, rather than leaving it to an empty list. Debt and fraud are purposes
# Northern Ireland bodies may still pursue under other law (benefit fraud checks with DWP
# run under social security legislation), so for those Stormont refuses an agreement that
# rests on the DEA: its power cites DEA 2017 s.48 or s.56.
package concordat.local

import rego.v1

import data.concordat.common.agreement
import data.concordat.common.checks
import data.concordat.common.register
import data.concordat.common.request

order := array.concat(["stormont.psd_not_available", "stormont.dea_gateway_not_in_force"], checks.order)

failures contains "stormont.psd_not_available" if request.purpose == "PUBLIC_SERVICE_DELIVERY"

# A list, not a set: see `purposes` in request.rego.
uncommenced_purposes := ["DEBT", "FRAUD"]

# Stormont decides only for its own bodies (egress: the requester; ingress: the provider),
# so the Northern Ireland party is the one this node speaks for. An unknown agreement is
# left to `common.agreement_unknown`; a registered one whose power is missing or not a
# string is refused here too, as resting on no other power.
failures contains "stormont.dea_gateway_not_in_force" if {
	request.purpose in uncommenced_purposes
	agreement.registered
	not rests_on_other_law
}

rests_on_other_law if {
	power := register.agreement.power
	is_string(power)
	not regex.match(`\bDEA 2017\b|Digital Economy Act 2017`, power)
}
