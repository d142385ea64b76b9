"""How a body is read exactly as its provider reads it: JSON, paths in it, raw headers, attachments."""
