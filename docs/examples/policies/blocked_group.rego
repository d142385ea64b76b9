# Members of a blocked group may not call any model.
package tollgate

import rego.v1

blocked_groups := {"suspended", "interns-after-hours"}

deny contains msg if {
	some group in input.client.groups
	group in blocked_groups
	msg := sprintf("group %s is blocked", [group])
}
