"""The Modal backend (storage): see broker.py."""
