# Cap what a call may ask for: max_tokens at most 4096, and it must be set on generating calls.
package tollgate

import rego.v1

cap := 4096

generating := {"chat.completions", "responses", "messages", "generateContent", "streamGenerateContent", "converse", "converse-stream", "invoke", "invoke-with-response-stream", "rawPredict", "streamRawPredict"}

deny contains msg if {
	is_number(input.request.max_tokens) # regopy, unlike OPA, orders null above every number
	input.request.max_tokens > cap
	msg := sprintf("max_tokens %d is over the cap of %d", [input.request.max_tokens, cap])
}

deny contains msg if {
	input.method == "POST"
	input.endpoint in generating
	input.request.max_tokens == null
	msg := sprintf("set max_tokens (at most %d)", [cap])
}
