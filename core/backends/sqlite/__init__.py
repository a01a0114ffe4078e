"""The SQLite backend (storage): see broker.py."""
