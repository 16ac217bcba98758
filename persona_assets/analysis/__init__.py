"""The study's analyses on a run's (or an earlier study's) matrices, and the kill verdicts.

Modules, in dependency order (what a newcomer changes here: an analysis, a verdict, a chart):
- `matrices`: `AnalysisInputs`, one shape for every source, and `inputs_from_run`;
- `earlier_results`: `AnalysisInputs` from a folder of the earlier study's files;
- `pair_tables`: one row per persona pair, every predictor a column;
- `inference`: design-respecting tests and question-level uncertainty;
- `kill_criteria`, `verdicts`: the pre-registered kill criteria and their verdicts with evidence;
- `correlation_report`: the analysis assets' functions (`cosine_precheck`, `leakage_correlations`);
- `charts`: Altair charts saved as PNG and HTML; `drawings`: each spec's PNG drawn once and kept by content.

Names are imported lazily: `from persona_assets.analysis import leakage_correlations`. No dagster import.
"""

from persona_assets.lazy_exports import lazy_getattr

_EXPORTS = {
    # matrices
    "AnalysisInputs": "matrices",
    "CosineSet": "matrices",
    "inputs_from_run": "matrices",
    # earlier_results
    "inputs_from_legacy_dir": "earlier_results",
    # pair_tables
    "unordered_pair_table": "pair_tables",
    "directed_pair_table": "pair_tables",
    "js_column": "pair_tables",
    "cosine_column": "pair_tables",
    # kill_criteria
    "discrimination_verdict": "kill_criteria",
    "redundancy_verdict": "kill_criteria",
    # verdicts
    "kill_gate_verdicts": "verdicts",
    "question_informativeness": "verdicts",
    # correlation_report
    "cosine_precheck": "correlation_report",
    "precheck_from_detail": "correlation_report",
    "leakage_correlations": "correlation_report",
}
__all__ = list(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
