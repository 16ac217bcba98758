"""What every blocking asset check of the graph returns, and the tolerance of its float comparisons."""

import dagster as dg

from persona_assets.ui_metadata import rounded_values

# Float64 math on float32 log-probabilities: rounding stays far below this.
TOLERANCE = 1e-9


def error_result(passed: bool, description: str, **metadata) -> dg.AssetCheckResult:
    """A blocking (ERROR) check result; the metadata shown at 4 significant digits, the check used the exact values."""
    return dg.AssetCheckResult(
        passed=bool(passed),
        severity=dg.AssetCheckSeverity.ERROR,
        description=description,
        metadata=rounded_values(metadata),
    )
