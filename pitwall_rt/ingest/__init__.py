"""Ingest: every source (UDP, HTTP, demo, S3, F1 game) ends in ``Ingestor``."""
