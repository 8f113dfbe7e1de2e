# Northern Ireland's own checks, applied in both directions.
#
# The public service delivery gateway (DEA 2017 s.35) works only for objectives set by the
# relevant national authority; the UK list (SI 2018/912) does not extend to Northern
# Ireland and no Northern Ireland department has set objectives, so Stormont refuses the
# purpose outright, ahead of every other check, rather than leaving it to an empty list.
package concordat.local

import rego.v1

import data.concordat.common.checks
import data.concordat.common.request

order := array.concat(["stormont.psd_not_available"], checks.order)

failures contains "stormont.psd_not_available" if request.purpose == "PUBLIC_SERVICE_DELIVERY"
