# Tests of jwt_claims.rego: `tollgate policy test docs/examples/policies/` (or opa test).
package tollgate_test.jwt_claims

import rego.v1

import data.tollgate

call(endpoint, identity) := object.union(
	{
		"client": {"name": "agent-7", "groups": [], "auth": "jwt"},
		"endpoint": endpoint, "method": "POST", "model": "gpt-4o", "unread": [],
		"request": {"max_tokens": 1024, "stream": false},
	},
	{"identity": identity},
)

read_only := {"issuer": "https://auth.example.com", "claims": {"agent_role": "read-only"}}

workflow(ref) := {"issuer": "https://token.actions.githubusercontent.com", "claims": {"ref": ref}}

test_a_read_only_agent_may_only_count_and_list if {
	"agent role read-only may not call chat.completions" in tollgate.deny with input as call("chat.completions", read_only)
	denied := tollgate.deny with input as call("models", read_only)
	every reason in denied {
		not startswith(reason, "agent role")
	}
}

test_workflows_call_from_main_only if {
	"workflows may call only from refs/heads/main, not refs/heads/dev" in tollgate.deny with input as call("chat.completions", workflow("refs/heads/dev"))
	denied := tollgate.deny with input as call("chat.completions", workflow("refs/heads/main"))
	every reason in denied {
		not startswith(reason, "workflows")
	}
}

test_a_caller_without_a_token_is_not_judged_here if {
	denied := tollgate.deny with input as object.remove(call("chat.completions", {}), ["identity"])
	every reason in denied {
		not startswith(reason, "agent role")
		not startswith(reason, "workflows")
	}
}
