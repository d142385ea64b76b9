"""The audit sent elsewhere from its file: OpenTelemetry logs and PostgreSQL."""
