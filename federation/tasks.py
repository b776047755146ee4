"""Celery tasks of the federation app (sync loop arrives with the federation issue)."""
