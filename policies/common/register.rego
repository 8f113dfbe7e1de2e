# Lookups into the deciding administration's register of data sharing agreements.
package concordat.common.register

import rego.v1

import data.concordat.common.request

# A body is named "organisation@administration" in every register, so the same body is
# spelt the same way by every administration and bodies of different administrations
# never collide. (concat, not sprintf: rego-cpp 1.5's sprintf quotes a string that
# reached it through a function argument.)
requester := concat("@", [request.req.requester.organisation, request.req.requester.administration])

# The register is keyed by agreement id. rego-cpp still finds the key by scanning the
# register's keys in order (about 1 µs a key), so the lookup is made once per decision:
# when no agreement has the id, the default `false` is remembered like any other value,
# where an undefined lookup would be scanned again by every rule that reads it. `false`
# reads as a missing agreement everywhere: its fields are undefined, `is_object` is false.
default agreement := false

agreement := data.register.agreements[request.agreement_id]

provider := agreement.provider

provider_administration := split(provider, "@")[1]

requester_body := data.register.bodies[requester]

provider_body := data.register.bodies[provider]

# ISO 8601 dates compare correctly as strings, so no time parsing is needed.
today := request.today
