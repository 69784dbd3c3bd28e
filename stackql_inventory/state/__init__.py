"""Shared rx.State classes (thin handlers; import no other app module but services)."""
