"""Telemetry: per-worker sampling, imbalance, backlog depth, diagnosis, recording."""
