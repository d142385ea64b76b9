# Tests of max_tokens_cap.rego: `tollgate policy test docs/examples/policies/` (or opa test).
package tollgate_test.max_tokens_cap

import rego.v1

import data.tollgate

call(max_tokens, groups) := {
	"client": {"name": "sam", "groups": groups, "auth": "virtual_key"},
	"endpoint": "chat.completions", "method": "POST", "model": "gpt-4o", "unread": [],
	"request": {"max_tokens": max_tokens, "stream": false},
}

capped(denied) if {
	some reason in denied
	startswith(reason, "max_tokens ")
}

test_over_the_cap_is_refused if {
	"max_tokens 8193 is over the cap of 8192" in tollgate.deny with input as call(8193, ["research"])
}

test_at_the_cap_goes if {
	denied := tollgate.deny with input as call(8192, ["research"])
	not capped(denied)
}

test_no_max_tokens_is_not_judged if {
	denied := tollgate.deny with input as call(null, ["research"])
	not capped(denied)
}

test_agents_have_a_higher_cap if {
	denied := tollgate.deny with input as call(32000, ["research", "agents"])
	not capped(denied)
	"max_tokens 64001 is over the cap of 64000" in tollgate.deny with input as call(64001, ["agents"])
}
