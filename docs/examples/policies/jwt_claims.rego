# Callers identified by a JWT (identity.jwt in tollgate.yaml) are judged on their token's claims:
# an agent whose token says `agent_role: read-only` may only count tokens and list models, and
# GitHub Actions workflows may call only from the main branch. `input.identity` is undefined for
# callers identified otherwise (virtual key, proxy login, SigV4, anonymous), so neither rule
# applies to them.
package tollgate

import rego.v1

read_only_endpoints := {"models", "messages.count_tokens", "countTokens", "count-tokens"}

deny contains msg if {
	input.identity.claims.agent_role == "read-only"
	not input.endpoint in read_only_endpoints
	msg := sprintf("agent role read-only may not call %v", [input.endpoint])
}

deny contains msg if {
	input.identity.issuer == "https://token.actions.githubusercontent.com"
	input.identity.claims.ref != "refs/heads/main"
	msg := sprintf("workflows may call only from refs/heads/main, not %v", [input.identity.claims.ref])
}
