"""Who is calling: the configured clients and their virtual keys (`clients.py`), and a configured
issuer's JWTs (`jwt_identity.py`)."""
