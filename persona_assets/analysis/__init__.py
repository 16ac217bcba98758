"""The study's analyses on a run's (or an earlier study's) matrices: inputs, correlation report, design-respecting inference, kill criteria and verdicts, charts. No dagster import."""
