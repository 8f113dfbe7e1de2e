# Wales's own checks, applied in both directions.
#
# Welsh public bodies share personal information under the Wales Accord on the Sharing of
# Personal Information (WASPI): each exchange sits under an Information Sharing Protocol,
# so an agreement that records no protocol reference is refused, whichever side the
# Welsh body is on.
package concordat.local

import rego.v1

import data.concordat.common.checks
import data.concordat.common.register

order := array.concat(checks.order, ["cardiff.waspi_protocol_missing"])

failures contains "cardiff.waspi_protocol_missing" if not waspi_protocol

waspi_protocol if {
	is_string(register.agreement.isp_reference)
	register.agreement.isp_reference != ""
}
