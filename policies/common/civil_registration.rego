# Civil registration: registrars (GRO for England and Wales under the Registration Service
# Act 1953 s.19AA as inserted by DEA 2017 s.44, NRS for Scotland, GRONI for Northern
# Ireland) may disclose registration records to public bodies that need them for their
# functions. Only registrars disclose under this purpose, and only registration records.
package concordat.common.civil_registration

import rego.v1

import data.concordat.common.register
import data.concordat.common.request

# (A list, not a set: see `purposes` in request.rego.)
registration_record_types := ["BIRTH_REGISTRATION", "DEATH_REGISTRATION", "MARRIAGE_REGISTRATION"]

failures contains "common.civil_registration_record_type" if {
	request.purpose == "CIVIL_REGISTRATION"
	not registration_record
}

# Each membership test is a rule of its own, negated where it is used: a missing record
# type or provider must fail the check on OPA too (see `started` in agreement.rego).
registration_record if request.record_type in registration_record_types

failures contains "common.civil_registration_provider_not_registrar" if {
	request.purpose == "CIVIL_REGISTRATION"
	not provider_is_registrar
}

provider_is_registrar if "registrar" in register.provider_body.roles
