"""The job runner: `python -m runner --schedule-id N` (imports only config, db and services)."""
