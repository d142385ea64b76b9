"""The stages of a call's way upstream and back: its credential, the stream read as it passes,
upstream failures, retries and fallbacks."""
