# Lookups into the deciding administration's register of data sharing agreements.
package concordat.common.register

import rego.v1

import data.concordat.common.request

# A body is named "organisation@administration" in every register, so the same body is
# spelt the same way by every administration and bodies of different administrations
# never collide. (concat, not sprintf: rego-cpp 1.5's sprintf quotes a string that
# reached it through a function argument.)
requester := concat("@", [request.req.requester.organisation, request.req.requester.administration])

# An agreement is looked up once per decision: when no agreement has the id, the default
# `false` is remembered like any other value, where an undefined lookup would be worked out
# again by every rule that reads it. `false` reads as a missing agreement everywhere: its
# fields are undefined, `is_object` is false.
default agreement := false

# A register written as `agreements` keyed by id (a test's fixture register, or a bundle
# not loaded by Concordat) is read as written.
agreement := a if {
	a := data.register.agreements[request.agreement_id]
} else := a if {
	not data.register.agreements
	a := data.register.agreement_shards[shard(request.agreement_id)][request.agreement_id]
}

# rego-cpp finds an object's key by walking the keys in order, about 1 µs a key: the middle
# of 10,000 agreements took about 5 ms to reach. So Concordat's bundle loader files each
# agreement under a shard named by the first two hex digits of the MD5 of its id, in place
# of `agreements` (gateway/policy/register_shards.py), and a lookup walks one shard of the
# 256. MD5 only spreads the ids: within its shard an agreement is found by its whole id.
shard(agreement_id) := substring(crypto.md5(agreement_id), 0, 2)

provider := agreement.provider

provider_administration := split(provider, "@")[1]

requester_body := data.register.bodies[requester]

provider_body := data.register.bodies[provider]

# ISO 8601 dates compare correctly as strings, so no time parsing is needed.
today := request.today
