# Only inference goes through: generating, embedding, counting tokens, moderating, listing models.
# Everything else a provider's API offers with the same key — trace uploads (openai-agents'
# /v1/traces/ingest, endpoint `traces.ingest`), files, uploads, batches, fine-tuning, vector stores,
# assistants, evals, … — is refused unless one of the caller's groups allows that endpoint. An
# endpoint Tollgate cannot name (null) is not inference either.
package tollgate

import rego.v1

inference := {
	# The OpenAI format, also on the other providers' OpenAI-compatible paths
	"chat.completions", "completions", "responses", "embeddings", "moderations", "models",
	"images.generations", "images.edits", "images.variations",
	"audio.speech", "audio.transcriptions", "audio.translations", "realtime",
	# Gemini
	"generateContent", "streamGenerateContent", "countTokens", "embedContent", "batchEmbedContents", "models.get",
	# Anthropic
	"messages", "messages.count_tokens",
	# Bedrock
	"converse", "converse-stream", "invoke", "invoke-with-response-stream", "invoke-with-bidirectional-stream",
	"count-tokens", "apply-guardrail",
	# Vertex AI (its Google models' methods are Gemini's, above)
	"rawPredict", "streamRawPredict", "computeTokens",
}

# Endpoints each group may call besides, as globs split at ".": `*` stays within one part of the
# name, `**` crosses parts (`files**` is `files`, `files.content`, …).
allowed_endpoints := {
	"agents": ["traces.ingest"],
	"data": ["files**", "uploads**", "batches**", "messages.batches**", "vector_stores**"],
	"platform": ["**"],
}

endpoint_permitted if input.endpoint in inference

endpoint_permitted if {
	is_string(input.endpoint)
	some group in input.client.groups
	some pattern in allowed_endpoints[group]
	glob.match(pattern, [], input.endpoint)
}

deny contains msg if {
	not endpoint_permitted
	msg := sprintf("endpoint %v is not inference; groups %v may not call it", [input.endpoint, input.client.groups])
}
