"""Bookkeeping of runs: atomic file writes, result sets, generation cache, alerts, progress, errors. No dagster import."""
