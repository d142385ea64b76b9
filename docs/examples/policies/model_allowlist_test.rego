# Tests of model_allowlist.rego: `tollgate policy test docs/examples/policies/` (or opa test).
# They check this policy's own reasons, so they hold beside the other examples too.
package tollgate_test.model_allowlist

import rego.v1

import data.tollgate

call(model, groups) := {
	"client": {"name": "sam", "groups": groups, "auth": "virtual_key"},
	"endpoint": "chat.completions", "method": "POST", "model": model, "unread": [],
	"request": {"max_tokens": 1024, "stream": false},
}

refused(model, groups) := sprintf("model %s is not allowed for groups %v", [model, groups])

test_research_may_call_its_models if {
	every model in ["gpt-4o", "gpt-4o-2024-08-06", "gpt-4.1-mini", "claude-opus-4-1", "gemini-2.5-pro"] {
		not refused(model, ["research"]) in tollgate.deny with input as call(model, ["research"])
	}
}

test_a_pattern_matches_across_dots if {
	not refused("claude-3.7-sonnet", ["research"]) in tollgate.deny with input as call("claude-3.7-sonnet", ["research"])
}

test_research_may_not_call_other_models if {
	every model in ["o3", "gemini-1.5-pro", "anthropic.claude-3-5-sonnet-20240620-v1:0"] {
		refused(model, ["research"]) in tollgate.deny with input as call(model, ["research"])
	}
}

test_support_is_held_to_its_exact_names if {
	not refused("gpt-4o-mini", ["support"]) in tollgate.deny with input as call("gpt-4o-mini", ["support"])
	refused("gpt-4o-mini-2024-07-18", ["support"]) in tollgate.deny with input as call("gpt-4o-mini-2024-07-18", ["support"])
}

test_one_permitting_group_is_enough if {
	not refused("gpt-4.1", ["support", "research"]) in tollgate.deny with input as call("gpt-4.1", ["support", "research"])
}

test_a_caller_in_no_listed_group_may_call_nothing if {
	refused("gpt-4o", []) in tollgate.deny with input as call("gpt-4o", [])
}

test_an_unread_model_is_for_uploaders_only if {
	upload := object.union(call(null, ["support"]), {"endpoint": "files", "unread": ["model"]})
	"the model of this files call is not read; groups [\"support\"] may not make one" in tollgate.deny with input as upload
	denied := tollgate.deny with input as object.union(upload, {"client": {"groups": ["research"]}})
	every reason in denied {
		not contains(reason, "is not read")
	}
}

# A call that names no model (a listing, Claude Code's calls to Anthropic's own service): its model
# is null, which the allow-list leaves alone; a string built-in given it would fail the policy.
test_a_call_that_names_no_model_is_decided if {
	service := object.union(call(null, ["support"]), {"endpoint": "api.claude_code.settings", "method": "GET"})
	denied := tollgate.deny with input as service
	every reason in denied {
		not contains(reason, "is not allowed")
	}
}
