"""Statistics of pair values: correlations with bootstrap CIs, dependent and grouped correlations, permutation tests, question bootstrap, calibration. No dagster import."""
