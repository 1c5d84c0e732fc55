"""Backups: encrypted database dumps with a manifest, verified and restorable (``hub backup``)."""
