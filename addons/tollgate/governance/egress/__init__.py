"""Which connections a client may open (`egress.py`; its settings, `egress_settings.py`; the AI
services' catalogue, `ai_services.py`), the tokens put in place of the placeholders agents hold
(`brokered.py`), and a request that names two hosts (`misdirection.py`)."""
