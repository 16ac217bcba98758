"""The `available` flag of an analysis input: False when there is nothing to analyse (e.g. no earlier results).

One key, spelled once: the inputs assets set it, the analysis assets, figures and checks read it.
"""

from persona_assets.analysis.matrices import AnalysisInputs

AVAILABLE = "available"


def missing_inputs(value: dict) -> dict | None:
    """What an analysis asset returns when its inputs asset says there is nothing to analyse; None otherwise."""
    if value.get(AVAILABLE, True):
        return None
    return {AVAILABLE: False, "note": value.get("note", "no inputs")}


def loaded_inputs(value: dict) -> AnalysisInputs:
    """The `AnalysisInputs` inside an inputs asset's output (the flag removed)."""
    return AnalysisInputs.from_dict({k: v for k, v in value.items() if k != AVAILABLE})
