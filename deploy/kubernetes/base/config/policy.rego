# The cluster's policy (the ConfigMap tollgate-config, named by tollgate.yaml's policy.rego).
# Examples of other rules: docs/examples/policies/; the input document: docs/policy.md.
package tollgate

import rego.v1

blocked_groups := {"suspended"}

deny contains msg if {
	some group in input.client.groups
	group in blocked_groups
	msg := sprintf("group %s is blocked", [group])
}
