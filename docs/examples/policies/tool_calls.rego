# Tool calls in a model's answer, decided before the agent gets them (`agents` on): money is sent
# only to a known payee, and never with an argument that came from outside content.
package tollgate.tools

import rego.v1

payees := {"GB29NWBK60161331926819", "DE89370400440532013000"}

deny contains msg if {
	input.tool.name == "send_money"
	some taint in input.tool.tainted
	msg := sprintf("send_money's %s comes from %s", [taint.path, concat(", ", taint.sources)])
}

# A recipient missing is no known payee either.
deny contains msg if {
	input.tool.name == "send_money"
	recipient := object.get(input.tool.arguments, "recipient", "nobody")
	not recipient in payees
	msg := sprintf("send_money to %v, not a known payee", [recipient])
}
