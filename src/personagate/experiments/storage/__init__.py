"""The run store: one SQLite database per run directory, and the typed records it returns."""
