# Tests of streaming_clients.rego: `tollgate policy test docs/examples/policies/` (or opa test).
package tollgate_test.streaming_clients

import rego.v1

import data.tollgate

call(client, stream) := {
	"client": {"name": client, "groups": [], "auth": "virtual_key"},
	"endpoint": "chat.completions", "method": "POST", "model": "gpt-4o", "unread": [],
	"request": {"max_tokens": 1024, "stream": stream},
}

test_only_listed_clients_stream if {
	"client bob may not stream" in tollgate.deny with input as call("bob", true)
	not "client alice may not stream" in tollgate.deny with input as call("alice", true)
}

test_a_call_that_does_not_stream_is_not_judged if {
	not "client bob may not stream" in tollgate.deny with input as call("bob", false)
	not "client bob may not stream" in tollgate.deny with input as call("bob", null)
}
