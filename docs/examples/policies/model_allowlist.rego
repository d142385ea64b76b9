# Each group may call only the models listed for it (globs); a caller in no listed group may
# call nothing. The seed proxy's "only approved models" rule, per group. Where the model is not
# read (`"model" in input.unread`: a file or audio upload, which goes upstream unread; an OpenAI
# batch, whose requests are in a file; an Assistant's run; a call that leaves its model to the
# provider's default; an Anthropic batch of several models), only the groups in `uploaders` may
# make the call.
package tollgate

import rego.v1

uploaders := {"research"}

allowed_models := {
	"research": ["gpt-4o*", "gpt-4.1*", "claude-*", "gemini-2.*"],
	"support": ["gpt-4o-mini", "gemini-2.0-flash*"],
}

# Delimiters null: `*` matches any text, dots too (gemini-2.5-pro, claude-3.7-sonnet). With [] it
# would stop at every ".", as glob.match's default delimiter is ".".
model_permitted if {
	some group in input.client.groups
	some pattern in allowed_models[group]
	glob.match(pattern, null, input.model)
}

deny contains msg if {
	is_string(input.model) # null where the model is not read: the rule below judges those
	not model_permitted
	msg := sprintf("model %s is not allowed for groups %v", [input.model, input.client.groups])
}

deny contains msg if {
	"model" in input.unread
	not uploader
	msg := sprintf("the model of this %s call is not read; groups %v may not make one", [input.endpoint, input.client.groups])
}

uploader if {
	some group in input.client.groups
	group in uploaders
}
