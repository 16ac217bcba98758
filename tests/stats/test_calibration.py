"""Small, seeded calibration: the design-respecting tests keep their size under nulls with persona,
source and target effects, and detect planted relations; the tests that assume independent pairs
do not keep it. Bands are wide (binomial, ~4 SE) so an implementation change cannot make them flake;
the full calibration is benchmarks/calibration.py."""

from __future__ import annotations

from functools import lru_cache

import pytest

from persona_assets.stats import calibration as cal

SIMS = 200
FAST = cal.Settings(n_perm=99, n_boot=99)
# Under a null with 200 simulations a 5% test rejects 10 ± 3 times: [0, 0.11] is +4 SE.
SIZE_MAX = 0.11
SCENARIOS = cal.scenarios(FAST)


@lru_cache(maxsize=None)
def rates(scenario: str, seed: int) -> dict[str, float]:
    """Each scenario is simulated once per seed, whichever of its tests is asserted."""
    return cal.rejection_rates(SCENARIOS[scenario][1], SIMS, seed=seed)


@pytest.mark.parametrize(
    ("scenario", "test"),
    [
        ("js_vs_cosine: null, persona effects", "mantel_p"),
        ("js_vs_leakage: null, source effects", "persona_permutation_p"),
        ("js_vs_leakage: null, target effects", "persona_permutation_p"),
        ("js_vs_leakage: null, source + target effects", "persona_permutation_p"),
        ("js_vs_leakage: null, source + target effects", "crossed_bootstrap_ci"),
        ("difference: null, equal predictors (signal, ρ ≈ 0.45)", "permutation_difference_p"),
        ("difference: null, equal predictors (signal, ρ ≈ 0.45)", "crossed_bootstrap_difference_ci"),
    ],
)
def test_design_respecting_tests_keep_their_size(scenario: str, test: str) -> None:
    assert SCENARIOS[scenario][0] == "size"
    assert rates(scenario, 11)[test] <= SIZE_MAX


def test_independent_pair_tests_are_too_liberal_with_persona_effects() -> None:
    # The reason for the tests above: with persona effects the pair-level p and CI reject far
    # more often than 5% (the audit found ~35%); 0.15 is > 6 SE above 5%.
    matrix = rates("js_vs_cosine: null, persona effects", 11)
    assert matrix["scipy_spearman_p (independent pairs)"] > 0.15
    assert matrix["pair_bootstrap_ci (independent pairs)"] > 0.15
    assert rates("js_vs_leakage: null, target effects", 11)["source_cluster_bootstrap_ci (ignores targets)"] > 0.12


@pytest.mark.parametrize(
    ("scenario", "test", "minimum"),
    [
        ("js_vs_cosine: planted relation", "mantel_p", 0.5),
        ("js_vs_leakage: planted relation", "persona_permutation_p", 0.5),
        ("js_vs_leakage: planted relation", "crossed_bootstrap_ci", 0.35),
        ("difference: planted, JS only", "permutation_difference_p", 0.35),
    ],
)
def test_planted_relations_are_detected(scenario: str, test: str, minimum: float) -> None:
    assert SCENARIOS[scenario][0] == "power"
    assert rates(scenario, 12)[test] >= minimum


def test_question_bootstrap_ci_misses_the_true_mean_rarely() -> None:
    assert (
        rates("question bootstrap: pair-JS CI", 13)["pair_js_ci95_misses_true_mean (t interval, reported)"] <= SIZE_MAX
    )
