"""The stages of the process itself: its configuration option, its start and its drain."""
