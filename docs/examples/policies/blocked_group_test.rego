# Tests of blocked_group.rego: `tollgate policy test docs/examples/policies/` (or opa test).
package tollgate_test.blocked_group

import rego.v1

import data.tollgate

call(groups) := {
	"client": {"name": "zed", "groups": groups, "auth": "virtual_key"},
	"endpoint": "chat.completions", "method": "POST", "model": "gpt-4o", "unread": [],
	"request": {"max_tokens": 1024, "stream": false},
}

test_a_blocked_group_is_refused if {
	"group suspended is blocked" in tollgate.deny with input as call(["suspended"])
}

test_each_blocked_group_is_named if {
	denied := tollgate.deny with input as call(["interns-after-hours", "research", "suspended"])
	{"group interns-after-hours is blocked", "group suspended is blocked"} & denied == {
		"group interns-after-hours is blocked",
		"group suspended is blocked",
	}
}

test_other_groups_are_not_blocked if {
	denied := tollgate.deny with input as call(["research"])
	every reason in denied {
		not endswith(reason, "is blocked")
	}
}
