"""Tollgate's stages, one concern each; `tollgate.proxy.pipeline` runs them, hook by hook."""
