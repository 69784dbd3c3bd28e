"""Services: plain-Python business logic (no reflex imports)."""
