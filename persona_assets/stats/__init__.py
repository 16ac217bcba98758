"""Statistics of pair values, with nothing of personas or models in them.

Modules, in dependency order (what a newcomer changes here: a test, a CI, a resampling scheme):
- `helpers`: the shared input checks, point estimates and row-wise correlations (public, one place);
- `correlate`: Spearman/Pearson with bootstrap CIs; `dependent_correlations`, `grouped_correlations`;
- `permutation_tests`: Mantel and crossed-design tests (`permuted_rows`: their row-wise ranks and correlations);
  `question_bootstrap`: question-level uncertainty;
- `intervals`: interval arithmetic (log-t, jackknife, decision intervals) and the measured calibration labels;
- `pair_correlations`: correlations over persona-pair matrices; `calibration`: the tests' calibration by simulation.

Names are imported lazily: `from persona_assets.stats import mantel_test`. No dagster import.
A function named like its module is imported from the module itself (the package attribute is the module).
"""

from persona_assets.lazy_exports import lazy_getattr

_EXPORTS = {
    # correlate
    "Correlation": "correlate",
    # dependent_correlations
    "MRR": "dependent_correlations",
    "STEIGER": "dependent_correlations",
    "dependent_correlation_test": "dependent_correlations",
    "partial_correlation": "dependent_correlations",
    # grouped_correlations
    "within_group_correlations": "grouped_correlations",
    "between_within_decomposition": "grouped_correlations",
    "sign_agreement": "grouped_correlations",
    # permutation_tests
    "DEFAULT_N_PERMUTATIONS": "permutation_tests",
    "mantel_test": "permutation_tests",
    "leakage_permutation_test": "permutation_tests",
    "crossed_bootstrap": "permutation_tests",
    "difference_permutation_test": "permutation_tests",
    # question_bootstrap
    "pair_intervals": "question_bootstrap",
    "spearman_intervals": "question_bootstrap",
    "discrimination_intervals": "question_bootstrap",
    # pair_correlations
    "layer_depth": "pair_correlations",
    "rise_summary": "pair_correlations",
}
__all__ = list(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
