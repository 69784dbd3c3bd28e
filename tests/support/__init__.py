"""Test support: real PostgreSQL, the app server, and helpers shared by test modules."""
