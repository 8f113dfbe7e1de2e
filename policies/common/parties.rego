# Checks on the bodies exchanging data: both are parties to the agreement, the provider
# sits behind the providing node, both are in good standing and, where the DEA 2017 lists
# the bodies that may use a gateway, both are listed for it.
package concordat.common.parties

import rego.v1

import data.concordat.common.register
import data.concordat.common.request
import data.concordat.common.request.req

# Public service delivery (s.35, Sch. 4), debt (s.48, Sch. 5) and fraud (s.56, Sch. 7)
# are open only to the bodies the Act's schedules list.
# (A list, not a set: see `purposes` in request.rego.)
listed_purposes := ["PUBLIC_SERVICE_DELIVERY", "DEBT", "FRAUD"]

provider_matches if {
	register.provider in register.agreement.parties
	register.provider_administration == req.providing_node
}

both_listed if {
	purpose := request.purpose
	purpose in register.requester_body.listed_for
	purpose in register.provider_body.listed_for
}

failures contains "common.requester_not_party" if not requester_is_party

# A rule of its own, so that a requester or parties missing fails the check on OPA too
# (see `started` in agreement.rego).
requester_is_party if register.requester in register.agreement.parties

failures contains "common.provider_mismatch" if not provider_matches

# Fit and proper: a suspended body neither discloses nor receives, from the moment the
# register records the suspension.
failures contains "common.requester_not_fit_and_proper" if {
	not register.requester_body.status == "active"
}

failures contains "common.provider_not_fit_and_proper" if not register.provider_body.status == "active"

failures contains "common.body_not_listed_for_purpose" if not_listed

not_listed if {
	request.purpose in listed_purposes
	not both_listed
}
