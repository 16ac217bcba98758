"""Re-analysis of earlier results: the legacy group needs no model, and the committed config
materializes end to end from the CLI on the published study's results bundled in data/reference_study."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml

from persona_assets.assets.analysis import NO_PARAPHRASE_DATA
from persona_assets.assets.legacy import DEFAULT_LEGACY_DIR, legacy_assets
from persona_assets.checks import legacy_checks
from persona_assets.environment import storage_resources
from tests.conftest import REFERENCE_STUDY, REPO
from tests.test_readme_examples import readme_reanalysis_command

MODEL_ASSETS = {"eval_set", "generations", "persona_cosine", "divergence_matrices", "analysis_inputs", "leakage_rates"}
CONFIG = REPO / "configs" / "reanalyze_legacy.yaml"


def test_legacy_assets_depend_on_no_model_asset():
    from persona_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    legacy_keys = {a.key for a in legacy_assets}
    upstream = graph.get(legacy_keys.pop()).parent_keys
    for key in {a.key for a in legacy_assets}:
        upstream |= graph.get(key).parent_keys
    assert {k.to_user_string() for k in upstream} <= {a.key.to_user_string() for a in legacy_assets}
    assert not {k.path[-1] for k in upstream} & MODEL_ASSETS
    for asset in legacy_assets:
        spec = next(iter(asset.specs))
        assert spec.description and spec.group_name == "legacy" and spec.kinds, spec.key


def _materialize(legacy_dir: str):
    config = yaml.safe_load(CONFIG.read_text())
    config["ops"]["legacy_results"]["config"]["legacy_dir"] = legacy_dir
    for op in ("legacy_cosine_precheck", "legacy_leakage_correlations"):
        config["ops"][op]["config"]["n_bootstrap"] = 50
        config["ops"][op]["config"]["n_permutations"] = 50
    return dg.materialize(
        [*legacy_assets, *legacy_checks], resources=storage_resources(), run_config=config, raise_on_error=False
    )


def test_the_bundled_study_is_the_default_and_is_not_ignored_by_git():
    assert DEFAULT_LEGACY_DIR == "data/reference_study" and (REPO / DEFAULT_LEGACY_DIR).resolve() == REFERENCE_STUDY
    assert yaml.safe_load(CONFIG.read_text())["ops"]["legacy_results"]["config"]["legacy_dir"] == DEFAULT_LEGACY_DIR
    files = sorted(p.relative_to(REFERENCE_STUDY).as_posix() for p in REFERENCE_STUDY.rglob("*.json"))
    # Copied unchanged: the sums in PROVENANCE.md are those of the published files.
    listed = re.findall(r"^([0-9a-f]{64})  (\S+\.json)$", (REFERENCE_STUDY / "PROVENANCE.md").read_text(), re.M)
    assert sorted(name for _, name in listed) == files and len(files) == 13
    for digest, name in listed:
        assert hashlib.sha256((REFERENCE_STUDY / name).read_bytes()).hexdigest() == digest, name
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", *[f"data/reference_study/{f}" for f in files]],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert ignored.returncode == 1 and not ignored.stdout, ignored.stdout + ignored.stderr  # 1 = none ignored


def test_default_legacy_dir_absent_reports_not_available(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data/reference_study under this working directory
    result = _materialize(DEFAULT_LEGACY_DIR)
    assert result.success
    assert result.output_for_node("legacy_leakage_correlations")["available"] is False
    assert all(e.passed for e in result.get_asset_check_evaluations())


def test_explicit_legacy_dir_absent_fails_naming_it(tmp_path):
    result = _materialize(str(tmp_path / "nowhere"))
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "nowhere: no such folder" in str(failure.event_specific_data.error)


def test_reanalysis_config_materializes_reference_from_the_cli(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    # The re-analysis example of docs/reanalysis.md, as written (tests/test_readme_examples.py parses it).
    command = readme_reanalysis_command()
    command[0] = str(Path(sys.executable).parent / "dagster")
    run = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    steps = set(re.findall(r'Started execution of step "([^"]+)"', run.stderr + run.stdout))
    assert {
        "legacy_results",
        "legacy_cosine_precheck",
        "legacy_leakage_correlations",
        "legacy_kill_gate_verdicts",
        "legacy_figures",
    } <= steps
    assert not {s for s in steps if s.split("__")[-1] in MODEL_ASSETS}

    outputs = tmp_path / "data" / "outputs"
    precheck = json.loads((outputs / "legacy_cosine_precheck.json").read_text())
    file_layers = precheck["from_file"]["all_pairs"]["by_layer"]
    assert list(file_layers) == ["layer10", "layer15", "layer20", "layer25"]
    assert all(c["n"] == 550 and c["bootstrap_unit"] == "source-cluster" for c in file_layers.values())
    assert file_layers["layer20"]["spearman_rho"] == pytest.approx(0.6016, abs=2e-3)  # the file's own aggregate
    assert precheck["cosine_matrix"]["layers_missing"] == ["layer10", "layer15", "layer25"]
    assert precheck["cosine_matrix"]["centring"] != precheck["from_file"]["centring"]

    correlations = json.loads((outputs / "legacy_leakage_correlations.json").read_text())
    assert correlations["averagings"] == ["pair_own", "all_responses"]
    leakage = correlations["leakage"]
    assert leakage["n_directed_pairs"] == 50 and leakage["n_sources"] == 5
    for averaging in ("pair_own", "all_responses"):
        section = leakage["by_averaging"][averaging]
        assert section["js_vs_leakage"]["spearman_rho"] < 0 and section["js_vs_leakage"]["spearman_ci95"]
        assert (
            section["js_vs_cosine_as_predictors"]["cosine_matrix"]["layer20"]["meng_rosenthal_rubin"]["p_two_sided"]
            is not None
        )
        assert correlations["by_averaging"][averaging]["js_vs_cosine"]["cosine_matrix"]["layer20"]["n"] == 55
    assert correlations["by_averaging"]["pair_own"]["js_vs_cosine"]["cosine_leakage_file"]["layer20"]["n"] == 40
    assert leakage["kl_asymmetry"]["signed"]["n"] == 10 and leakage["kl_asymmetry"]["absolute"]["n"] == 10
    assert correlations["length_confound"]["available"] is False
    assert "not available" in correlations["length_confound"]["note"]

    # The design-respecting tests next to every correlation, with their unit and resample counts.
    mantel = correlations["by_averaging"]["pair_own"]["js_vs_cosine"]["cosine_matrix"]["layer20"]["mantel"]
    assert (
        mantel["n"] == 55
        and mantel["n_permutations"] == 2000
        and mantel["resampling_unit"].startswith("persona labels")
    )
    assert 0 < mantel["spearman_p"] < 0.01  # strong even against persona-label permutations
    js_leak = leakage["js_vs_leakage"]
    assert js_leak["persona_permutation"]["strata"] == {"source=True,target=True": 5, "source=False,target=True": 6}
    assert js_leak["persona_permutation"]["spearman_p"] > js_leak["spearman_p"]  # the design costs evidence
    assert js_leak["crossed_bootstrap"]["n_sources"] == 5 and js_leak["crossed_bootstrap"]["n_targets"] == 11
    difference = leakage["js_vs_cosine_as_predictors"]["cosine_matrix"]["layer20"]["permutation_difference"]
    assert difference["p_two_sided"] > 0.05 and difference["n_permutations"] == 2000
    question = correlations["question_bootstrap"]["pair_own"]
    assert question["n_questions"] == 20 and len(question["pairs"]) == 55 and question["matrix_gap"] < 1e-12
    assert 0.002 < question["pair_differences"]["median_pair_se"] < 0.004  # ~12% of a pair value
    assert question["kl"] is None  # per-prompt KL was not saved

    verdicts = json.loads((outputs / "legacy_kill_gate_verdicts.json").read_text())
    assert verdicts["discrimination"]["call"] == "decided by the data"
    assert verdicts["discrimination"]["question_bootstrap"]["js_std"]["ci95"][1] < 0.05
    assert verdicts["redundancy"]["call"] in ("decided by the data", "too close to call")
    # Imported values: nothing measured the batch composition or the precision; the output says so.
    uncertainties = verdicts["noise_floor"]["uncertainties"]
    assert uncertainties["floor"] is None and uncertainties["covered_elsewhere"][0].startswith("which questions")
    assert [u.split(":")[0] for u in uncertainties["not_covered"]] == [
        "batch composition",
        "numeric precision of scoring",
        "numeric precision of generation",
    ]
    assert (tmp_path / "figures" / "legacy" / "pair_js_uncertainty.png").stat().st_size > 10_000
    assert any("unreachable" in note for note in verdicts["discrimination"]["notes"])
    assert set(verdicts["discrimination_by_averaging"]) == {"pair_own", "all_responses"}
    assert verdicts["question_informativeness"]["pair_own"]["n_questions"] == 20
    assert (tmp_path / "figures" / "legacy" / "js_vs_leakage.png").stat().st_size > 10_000

    # The example's next line (docs/reanalysis.md): the summary prints the study's verdicts and correlations, then the
    # numbers to read first, ending with the hero figure (no embedded run here: its heatmap is absent).
    summary = subprocess.run(
        [sys.executable, "-m", "persona_assets.summary"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert summary.returncode == 0, summary.stderr
    lines = summary.stdout.splitlines()
    assert lines[0] == f"== earlier results re-analysed: Qwen/Qwen2.5-7B-Instruct ({REFERENCE_STUDY}) =="
    assert lines[1].startswith("kill gate discrimination: KILLED") and any(
        line.startswith("kill gate redundancy: KILLED") for line in lines
    )
    pair_own = leakage["by_averaging"]["pair_own"]
    rho = pair_own["js_vs_leakage"]["spearman_rho"]
    assert f"  JS vs leakage, pair_own (primary): Spearman ρ = {rho:+.2f}" in "\n".join(lines)
    perm = pair_own["js_vs_cosine_as_predictors"]["cosine_leakage_file"]["layer20"]["permutation_difference"]
    assert any(
        line.startswith(
            f"      cosine_leakage_file/layer20: difference {perm['difference']:+.2f}, permutation p = "
            f"{perm['p_two_sided']:.3g}"
        )
        for line in lines
    )
    read_first = lines[lines.index("== read first ==") + 1 :]
    assert read_first[0].startswith(f"study: JS vs leakage Spearman ρ = {rho:+.2f}")
    # The study has no per-token data: the summary says so instead of leaving the lens and profile lines out.
    assert f"study: no per-token data in {REFERENCE_STUDY} (pair matrices only)" in "\n".join(read_first)
    cosine = pair_own["cosine_vs_leakage_same_pairs"]["cosine_leakage_file"]["layer20"]  # the strongest of the five
    assert read_first[1].startswith(
        "study: best cosine vs leakage, same pairs (cosine_leakage_file/layer20) Spearman ρ = "
        f"{cosine['spearman_rho']:+.2f}"
    )
    assert read_first[2].startswith(
        f"study: JS vs that cosine as predictor: difference of ρ {perm['difference']:+.2f}, permutation p = "
        f"{perm['p_two_sided']:.2g}"
    )
    # Headlines carry the design-respecting inference only: the permutation p and the persona-bootstrap CI,
    # never the source-cluster CI; the large p of the difference comes with the test's power.
    js_leak = pair_own["js_vs_leakage"]
    assert read_first[0] == (
        f"study: JS vs leakage Spearman ρ = {rho:+.2f}, permutation p = "
        f"{js_leak['persona_permutation']['spearman_p']:.2g} "
        "(n = 50) (pair_own)"
    )
    assert not any("CI" in line for line in read_first[:3])
    crossed = js_leak["crossed_bootstrap"]["spearman_ci95"]
    assert any(
        line.startswith("  JS vs leakage, pair_own (primary): ")
        and f"persona-bootstrap 95% CI [{crossed[0]:+.2f}, {crossed[1]:+.2f}] (liberal" in line
        for line in lines
    )
    source_ci = js_leak["spearman_ci95"]
    assert f"[{source_ci[0]:.2f}, {source_ci[1]:.2f}]" not in summary.stdout
    power = leakage["difference_power"]
    assert power["cosine"] == "cosine_leakage_file/layer20" and len(power["by_mix"]) == 11
    assert "differences of ρ detectable with 80% power at this design" in read_first[2]
    # Every non-significant difference test of the primary averaging has its power, printed on its line.
    not_significant = {
        f"{set_name}/{layer}"
        for set_name, layers in pair_own["js_vs_cosine_as_predictors"].items()
        for layer, test in layers.items()
        if isinstance(test, dict) and test["permutation_difference"]["p_two_sided"] >= 0.05
    }
    by_cosine = leakage["difference_power_by_cosine"]
    assert not_significant and set(by_cosine) == not_significant and by_cosine[power["cosine"]] == power
    for key in not_significant:
        assert any(
            line.strip().startswith(f"{key}:")
            and "→ no significant difference; differences of ρ detectable with 80% power" in line
            for line in lines
        )
    assert (
        read_first[3].startswith("study: pair JS ")
        and f"discrimination KILLED ({verdicts['discrimination']['call']})" in read_first[3]
    )
    # The study has no paraphrase data: the verdict and the summary say so instead of leaving a blank.
    within = verdicts["discrimination"]["evidence"]["within_persona_baseline"]
    assert within == {"measured": False, "reason": NO_PARAPHRASE_DATA}
    assert f"study: no within-persona baseline — {NO_PARAPHRASE_DATA}" in read_first
    assert read_first[-1] == f"study's hero figure: {tmp_path / 'figures' / 'legacy' / 'js_vs_leakage.png'}"
