"""Tollgate's stages, one concern each; `tollgate.pipeline` runs them, hook by hook."""
