# Tests of inference_only.rego: `tollgate policy test docs/examples/policies/` (or opa test).
package tollgate_test.inference_only

import rego.v1

import data.tollgate

call(endpoint, groups) := {
	"client": {"name": "sam", "groups": groups, "auth": "virtual_key"},
	"endpoint": endpoint, "method": "POST", "model": "gpt-4o", "unread": [],
	"request": {"max_tokens": 1024, "stream": false},
}

refused(endpoint, groups) := sprintf("endpoint %v is not inference; groups %v may not call it", [endpoint, groups])

test_inference_goes_through if {
	every endpoint in ["chat.completions", "responses", "messages", "generateContent", "converse", "embeddings"] {
		not refused(endpoint, ["support"]) in tollgate.deny with input as call(endpoint, ["support"])
	}
}

test_files_and_batches_are_refused if {
	every endpoint in ["files", "batches", "fine_tuning.jobs", "vector_stores"] {
		refused(endpoint, ["support"]) in tollgate.deny with input as call(endpoint, ["support"])
	}
}

test_a_group_may_be_allowed_more if {
	not refused("files.content", ["data"]) in tollgate.deny with input as call("files.content", ["data"])
	not refused("traces.ingest", ["agents"]) in tollgate.deny with input as call("traces.ingest", ["agents"])
	refused("fine_tuning.jobs", ["data"]) in tollgate.deny with input as call("fine_tuning.jobs", ["data"])
}

test_an_endpoint_not_named_is_refused if {
	refused(null, ["platform"]) in tollgate.deny with input as call(null, ["platform"])
}
