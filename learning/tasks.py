"""Celery tasks of the learning app (the job runner arrives with the fine-tuning issue)."""
