"""The stages of `agents`: a call's request read for its answer's tool calls to be decided, and
the quarantine acted on."""
