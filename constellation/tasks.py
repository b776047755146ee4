"""Celery tasks of the constellation app (none yet: inference runs in the web process)."""
