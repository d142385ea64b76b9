# Each group may call only the models listed for it (globs); a caller in no listed group may
# call nothing. The seed proxy's "only approved models" rule, per group.
package tollgate

import rego.v1

allowed_models := {
	"research": ["gpt-4o*", "gpt-4.1*", "claude-*", "gemini-2.*"],
	"support": ["gpt-4o-mini", "gemini-2.0-flash*"],
}

permitted if {
	some group in input.client.groups
	some pattern in allowed_models[group]
	glob.match(pattern, [], input.model)
}

deny contains msg if {
	input.model != null
	not permitted
	msg := sprintf("model %s is not allowed for groups %v", [input.model, input.client.groups])
}
