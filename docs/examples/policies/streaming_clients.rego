# Only some clients may stream.
package tollgate

import rego.v1

may_stream := {"chat-ui", "alice"}

deny contains msg if {
	input.request.stream == true
	not input.client.name in may_stream
	msg := sprintf("client %v may not stream", [input.client.name])
}
