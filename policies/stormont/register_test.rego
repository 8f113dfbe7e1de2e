package concordat.tests.register

import rego.v1

import data.concordat.common.register_check

test_register_has_no_problems if {
	count(register_check.problems) == 0
}

test_register_is_stormont_s if {
	data.register.administration == "stormont"
}
