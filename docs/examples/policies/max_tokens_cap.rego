# Cap what a call may ask for: max_tokens at most 8192, and 64000 for the group `agents` (coding
# agents such as Claude Code ask for 32000 and more). A call that sets no max_tokens (null) is not
# judged here: the provider bounds it by the model's own maximum, which limits reserve.
package tollgate

import rego.v1

default_cap := 8192

group_caps := {"agents": 64000}

# The highest cap among the caller's groups, the default at least.
cap := max({default_cap} | {c | some group in input.client.groups; c := group_caps[group]})

deny contains msg if {
	is_number(input.request.max_tokens) # null when the call sets none
	input.request.max_tokens > cap
	msg := sprintf("max_tokens %d is over the cap of %d", [input.request.max_tokens, cap])
}
