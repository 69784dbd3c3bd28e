"""Database layer: SQLModel tables, engine/sessions, and all SQL for app metadata."""
