"""What the Dagster UI shows of a result: matrices as tables, one-line headlines, readable numbers, run tags.

Glue between results and the UI (Dagster's metadata values); the numbers come from the assets.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg

# Metadata and tables show this many significant digits: enough to compare pair values (the noise
# floor is stated next to them), few enough to read. The full values are in the output files.
DIGITS = 4

# Run tags that carry the kill verdict to the runs list and the run page.
VERDICT_TAG = "persona/kill_gates"
# A run refused on its settings: the tag and the sentence that go with its error.
SETTINGS_TAG = "persona/settings"
NOTHING_EVALUATED = (
    "Nothing was evaluated: the run stopped at its first step, before any model or analysis work; the outputs and "
    "figures of the last complete run are unchanged (assets and checks of this run show as failed or skipped only "
    "because they did not run)."
)


def rounded(value: Any, digits: int = DIGITS) -> Any:
    """`value` to `digits` significant digits (floats only; None, inf and NaN unchanged)."""
    if isinstance(value, float) and math.isfinite(value) and value != 0:
        return float(f"{value:.{digits}g}")
    return value


def rounded_values(metadata: Mapping[str, Any], digits: int = DIGITS) -> dict[str, Any]:
    """A flat metadata dict with every float at `digits` significant digits (see `rounded`)."""
    return {key: rounded(value, digits) for key, value in metadata.items()}


def matrix_table(names: Sequence[str], matrix: Sequence[Sequence[float]], *, digits: int = DIGITS) -> dg.MetadataValue:
    """An N×N matrix as a table: one row per persona (the row persona), one column per persona."""
    columns = [dg.TableColumn("persona", "string")]
    # Column names are the personas; a persona called "persona" would shadow the row label.
    labels = [name if name != "persona" else "persona (column)" for name in names]
    columns += [dg.TableColumn(label, "float") for label in labels]
    records = [
        dg.TableRecord({"persona": row_name, **{label: rounded(float(v), digits) for label, v in zip(labels, row)}})
        for row_name, row in zip(names, matrix)
    ]
    return dg.MetadataValue.table(records=records, schema=dg.TableSchema(columns=columns))


def verdict_line(verdicts: Mapping[str, Any], names: Sequence[str] = ("discrimination", "redundancy")) -> str:
    """'KILLED: discrimination (redundancy passed)' or 'passed: discrimination, redundancy'."""
    killed = [n for n in names if verdicts[n]["killed"]]
    passed = [n for n in names if not verdicts[n]["killed"]]
    if killed:
        return f"KILLED: {', '.join(killed)}" + (f" ({', '.join(passed)} passed)" if passed else "")
    return f"passed: {', '.join(passed)}"


def tag_run_with_verdict(context: dg.AssetExecutionContext, key: str, line: str) -> None:
    """Put the verdict on the run itself: the runs list and the run page show run tags."""
    context.instance.add_run_tags(context.run.run_id, {key: line})


def tag_run_settings_refused(context: dg.AssetExecutionContext) -> None:
    """Mark the run as refused on its settings, so the runs list says nothing was evaluated."""
    context.instance.add_run_tags(context.run.run_id, {SETTINGS_TAG: "refused: nothing evaluated"})
