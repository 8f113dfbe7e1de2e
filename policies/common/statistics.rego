# Statistics, DEA 2017 s.80 (Statistics and Registration Service Act 2007 s.45A onwards):
# public bodies may disclose to the UK Statistics Authority for official statistics, so
# only a statistics authority may ask under this purpose.
package concordat.common.statistics

import rego.v1

import data.concordat.common.register
import data.concordat.common.request

failures contains "common.statistics_requester_not_authority" if {
	request.purpose == "STATISTICS"
	not requester_is_authority
}

# A rule of its own, so that a missing requester fails the check on OPA too (see `started`
# in agreement.rego).
requester_is_authority if register.requester in data.register.statistics_authorities
