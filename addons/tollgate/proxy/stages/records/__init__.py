"""The stages that record calls: the audit, its export, metrics and traces."""
