# Tests of tool_calls.rego: `tollgate policy test docs/examples/policies/` (or opa test).
package tollgate_test.tool_calls

import rego.v1

import data.tollgate.tools

call(name, arguments, tainted) := {
	"client": {"name": "alice", "groups": ["finance"], "auth": "virtual_key"},
	"endpoint": "chat.completions", "model": "gpt-4o",
	"tool": {"name": name, "arguments": arguments, "tainted": tainted},
	"conversation": {"outside": ["read_inbox"], "findings": {}, "provider_tools": []},
}

test_money_to_a_known_payee_goes if {
	count(tools.deny) == 0 with input as call("send_money", {"recipient": "GB29NWBK60161331926819", "amount": 10}, [])
}

test_money_to_a_stranger_is_refused if {
	"send_money to XX00ATTACKER, not a known payee" in tools.deny with input as call(
		"send_money", {"recipient": "XX00ATTACKER", "amount": 10}, [],
	)
}

test_an_argument_from_outside_content_is_refused if {
	"send_money's amount comes from read_inbox" in tools.deny with input as call(
		"send_money",
		{"recipient": "GB29NWBK60161331926819", "amount": 1000},
		[{"path": "amount", "sources": ["read_inbox"]}],
	)
}

test_money_to_nobody_is_refused if {
	"send_money to nobody, not a known payee" in tools.deny with input as call("send_money", {"amount": 10}, [])
}

test_other_tools_are_not_decided_here if {
	count(tools.deny) == 0 with input as call("read_inbox", {}, [{"path": "folder", "sources": ["read_inbox"]}])
}
