# Each group may call only the models listed for it (globs); a caller in no listed group may
# call nothing. The seed proxy's "only approved models" rule, per group. A file or audio upload
# goes upstream unread, so its model is unknown (`"model" in input.unread`): only the groups in
# `uploaders` may make one.
package tollgate

import rego.v1

uploaders := {"research"}

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

deny contains msg if {
	"model" in input.unread
	not uploader
	msg := sprintf("the model of a %s upload is not read; groups %v may not upload", [input.endpoint, input.client.groups])
}

uploader if {
	some group in input.client.groups
	group in uploaders
}
