# The benchmarks' second policy file: a ceiling on max_tokens, high enough for every benchmark call.
# It makes the policy read max_tokens, in which the "distinct requests" calls differ: so each of
# them is decided anew, not taken from the decision cache.
package tollgate

import rego.v1

deny contains msg if {
	input.request.max_tokens > 1000000
	msg := sprintf("max_tokens %d is over the ceiling", [input.request.max_tokens])
}
