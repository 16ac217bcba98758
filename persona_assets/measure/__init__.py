"""The divergence measurement: JS/KL math, scoring rule, noise floor, precision and method records, response jobs and the divergence store. No dagster import."""
