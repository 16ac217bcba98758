"""The summary `make job` prints, on the outputs of a real run of the graph on the tiny model (with
leakage rates); the re-analysis of the bundled study is summarised in
tests/test_reanalysis.py::test_reanalysis_config_materializes_reference_from_the_cli."""

from __future__ import annotations

import json
import subprocess
import sys

from persona_assets.summary import summary_lines
from tests.conftest import REPO


def test_summary_of_a_tiny_run_ends_with_its_numbers_and_figures(tiny_leakage_run):
    result, tmp_path = tiny_leakage_run
    assert result.success
    outputs, figures = tmp_path / "data" / "outputs", tmp_path / "figures"
    lines = summary_lines(outputs, figures)

    verdicts = json.loads((outputs / "kill_gate_verdicts.json").read_text())
    correlations = json.loads((outputs / "leakage_correlations.json").read_text())["leakage"]
    assert lines[0].startswith("== this run: ") and "(float32, cpu)" in lines[0]
    for name in ("discrimination", "redundancy"):
        state = "KILLED" if verdicts[name]["killed"] else "passed"
        call = verdicts[name]["call"]  # the tiny run has per-question JS: the call is known and printed
        assert call in ("decided by the data", "too close to call")
        assert any(line.startswith(f"kill gate {name}: {state} ({call}) — {verdicts[name]['rule']}") for line in lines)
    assert not any(line.startswith("== earlier results") for line in lines)  # the legacy group did not run

    read_first = lines[lines.index("== read first ==") + 1 :]
    js = correlations["js_vs_leakage"]
    assert read_first[0].startswith(
        f"this run: JS vs leakage Spearman ρ = {js['spearman_rho']:+.2f}, permutation p = "
        f"{js['persona_permutation']['spearman_p']:.2g} (n = "
    )
    assert not any("CI" in line for line in read_first[:3])  # no uncalibrated interval in a headline
    # The rival named is the cosine layer with the strongest |ρ| against leakage on the same pairs.
    same_pairs = {
        f"in_graph/{k}": v
        for k, v in correlations["cosine_vs_leakage_same_pairs"]["in_graph"].items()
        if isinstance(v, dict)
    }
    best = max(same_pairs, key=lambda k: abs(same_pairs[k]["spearman_rho"]))
    assert read_first[1].startswith(
        f"this run: best cosine vs leakage, same pairs ({best}) Spearman ρ = {same_pairs[best]['spearman_rho']:+.2f}"
    )
    perm = correlations["js_vs_cosine_as_predictors"]["in_graph"][best.split("/")[1]]["permutation_difference"]
    assert read_first[2].startswith(
        f"this run: JS vs that cosine as predictor: difference of ρ {perm['difference']:+.2f}, permutation p = "
    )
    evidence = verdicts["discrimination"]["evidence"]
    assert read_first[3].startswith(f"this run: pair JS {evidence['js_min']:.3g}–{evidence['js_max']:.3g} nats")
    lens = json.loads((outputs / "layer_divergences.json").read_text())["report"]
    assert read_first[4].startswith("this run, through depth: mean pair JS through depth L1 ")
    assert f"from layer {lens['first_layer_ordering_pairs_like_output']}" in read_first[4]
    assert "strongest ρ(lens JS, leakage)" in read_first[4]
    assert read_first[5].startswith("this run, by response position: mean pair JS by response position 1–4: ")
    assert "most divergent pair" in read_first[5]
    baseline = json.loads((outputs / "persona_baseline.json").read_text())
    assert read_first[6] == f"this run: within-persona baseline: {baseline['read_first']}"
    assert read_first[-2:] == [
        f"this run's JS heatmap: {figures / 'js_heatmap.png'}",
        f"study's hero figure: not drawn ({figures / 'legacy' / 'js_vs_leakage.png'} is absent)",
    ]
    assert (figures / "js_heatmap.png").stat().st_size > 1000


def test_summary_without_results_says_so(tmp_path):
    run = subprocess.run([sys.executable, "-m", "persona_assets.summary"], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 1 and "no results yet under" in run.stderr and str(tmp_path) in run.stderr


def _power(key: str, detectable: float | None) -> dict:
    rows = [
        {"js_weight": 0.0, "true_difference": -0.3, "power": 0.5},
        {"js_weight": 1.0, "true_difference": 0.3, "power": 0.9 if detectable else 0.5},
    ]
    return {
        "cosine": key,
        "by_mix": rows,
        "minimal_detectable_difference": {"js_better": detectable, "cosine_better": None},
        "largest_difference_simulated": {"js_better": 0.3, "cosine_better": -0.3},
    }


def test_every_non_significant_difference_comes_with_its_power():
    from persona_assets.summary import headline_leakage, leakage_lines

    def test(d: float, p: float) -> dict:
        return {"permutation_difference": {"difference": d, "p_two_sided": p, "n_permutations": 199}}

    rho = {"spearman_rho": 0.5, "n": 20, "persona_permutation": {"spearman_p": 0.01}}
    section = {
        "js_vs_leakage": rho,
        "cosine_vs_leakage_same_pairs": {"c": {"centring": "mean", "l1": dict(rho, spearman_rho=0.6), "l2": rho}},
        "js_vs_cosine_as_predictors": {"c": {"l1": test(0.05, 0.6), "l2": test(0.4, 0.01)}},
    }
    leakage = {
        "available": True,
        "n_directed_pairs": 20,
        "n_sources": 4,
        "source_of_rates": "test",
        "averaging": "pair_own",
        **section,
        "by_averaging": {"pair_own": section},
        "difference_power": _power("c/l1", 0.3),
        "difference_power_by_cosine": {"c/l1": _power("c/l1", 0.3)},
    }
    lines = leakage_lines({"leakage": leakage})
    l1 = next(line for line in lines if line.strip().startswith("c/l1:"))
    l2 = next(line for line in lines if line.strip().startswith("c/l2:"))
    assert (
        "→ no significant difference; differences of ρ detectable with 80% power" in l1 and "JS better by ≥ 0.30" in l1
    )
    assert "no significant difference" not in l2  # p = 0.01: significant, no power clause
    headline = headline_leakage({"leakage": leakage}, "study")
    assert "no significant difference between JS and cosine" in headline[2] and "JS better by ≥ 0.30" in headline[2]
    # Without a simulated power the words say so rather than stand alone.
    leakage["difference_power_by_cosine"] = {}
    l1 = next(line for line in leakage_lines({"leakage": leakage}) if line.strip().startswith("c/l1:"))
    assert l1.endswith("→ no significant difference; power not simulated")
