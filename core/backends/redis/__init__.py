"""The Redis backend (storage): see broker.py."""
