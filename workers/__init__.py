"""Celery workers: transcribe, purge, rewrap. Imports ``keys`` and ``pipeline.store`` only."""
