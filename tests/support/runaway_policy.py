"""A policy whose evaluation runs away on one kind of model name: what the time limit on policy
evaluation is tested against, in unit and end-to-end tests alike."""

# A name of other characters is bad; one past 40 characters makes the second rule run away: ten
# billion pairs to try, far longer than any test runs. Other names are decided at once.
RUNAWAY = (
    "package tollgate\n\nimport rego.v1\n\n"
    'deny contains "bad model name" if not regex.match("^[a-z0-9.-]+$", input.model)\n\n'
    'deny contains "bad model name" if {\n'
    "\tcount(input.model) > 40\n"
    "\tsome i in numbers.range(1, 100000)\n"
    "\tsome j in numbers.range(1, 100000)\n"
    "\ti == -j\n"
    "}\n"
)
# The model name that makes RUNAWAY run away.
PATHOLOGICAL = "a" * 40 + "!"
