"""Where a call goes: model overrides and routes, its upstream, and its flow rid of credentials once sent."""
