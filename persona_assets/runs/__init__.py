"""Bookkeeping of runs: atomic file writes, versioned result sets, the generation cache, alerts, progress,
and the error every bad input raises.

What a newcomer changes here: where and how results are kept. Names are imported lazily:
`from persona_assets.runs import write_json`. No dagster import.
"""

from persona_assets.lazy_exports import lazy_getattr

_EXPORTS = {
    # errors
    "InputError": "errors",
    # storage
    "atomic_write_text": "storage",
    "atomic_write_bytes": "storage",
    "write_json": "storage",
    "read_json": "storage",
    "write_csv": "storage",
    "exclusive_lock": "storage",
    # result_sets
    "start_run": "result_sets",
    "finish_run": "result_sets",
    "list_runs": "result_sets",
    "run_dir": "result_sets",
    # generation_cache
    "GenerationCache": "generation_cache",
    "generation_key": "generation_cache",
    # alerts
    "deliver": "alerts",
    "WebhookPolicy": "alerts",
    # progress
    "ProgressReporter": "progress",
}
__all__ = list(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
