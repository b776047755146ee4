"""Celery tasks of the uploads app (extraction arrives with the fine-tuning issue)."""
