"""The whole graph, in-process, on a tiny random-weight Llama: every asset and check runs."""

from __future__ import annotations

import json
import math

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from persona_assets.assets.eval_set import eval_set
from persona_assets.assets.generations import generations
from persona_assets.definitions import all_assets
from persona_assets.checks import all_checks
from persona_assets.environment import storage_resources
from resources.llm import CpuLLM

PERSONAS = ["software_engineer", "villain", "comedian", "assistant"]


def run_config(tmp_path, **extra_ops) -> dg.RunConfig:
    ops = {
        "eval_set": {"config": {"personas": PERSONAS, "n_questions": 2}},
        "generations": {"config": {"max_new_tokens": 6}},
        "persona_cosine": {"config": {"layers": [1, 2]}},
        "leakage_correlations": {"config": {"n_bootstrap": 100}},
        "cosine_precheck": {"config": {"n_bootstrap": 100}},
    }
    ops.update(extra_ops)
    return dg.RunConfig(ops=ops)


def materialize(tiny_model_dir, config, instance=None):
    return dg.materialize(
        [*all_assets, *all_checks],
        resources={"llm": CpuLLM(model=str(tiny_model_dir)), **storage_resources()},
        run_config=config,
        raise_on_error=False,
        instance=instance,
    )


def write_leakage(path, rows):
    path.write_text("source,target,rate\n" + "".join(f"{s},{t},{r}\n" for s, t, r in rows))
    return str(path)


@pytest.fixture(scope="module")
def default_run(tiny_model_dir, tmp_path_factory):
    """(result, run directory) of one run on the default settings, without a leakage file: several
    tests read it and assert different things (none writes into its directory)."""
    run_dir = tmp_path_factory.mktemp("default-run")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PERSONA_DATA_DIR", str(run_dir / "data"))
        env.setenv("PERSONA_FIGURES_DIR", str(run_dir / "figures"))
        # No paraphrases used here: the baseline says plainly it measured nothing (the leakage run measures it).
        config = run_config(run_dir, persona_baseline={"config": {"max_paraphrases": 0}})
        return materialize(tiny_model_dir, config), run_dir


def test_full_graph_on_tiny_model(tiny_leakage_run):
    result, tmp_path = tiny_leakage_run
    assert result.success

    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    invariants = [
        "divergences_finite",
        "js_symmetric",
        "js_bounded_zero_diagonal",
        "kl_nonnegative_zero_diagonal",
        "no_empty_responses",
    ]
    for name in invariants:
        assert evaluations[name].passed, name
    assert {"kill_discrimination", "kill_redundancy"} <= set(evaluations)

    divergences = result.output_for_node("divergence_matrices", "divergence_matrices")
    js = np.array(divergences["js_matrix"])
    kl = np.array(divergences["kl_matrix"])
    assert js.shape == (4, 4) and np.allclose(js, js.T) and np.all(np.diag(js) == 0)
    assert np.all(js[~np.eye(4, dtype=bool)] > 1e-3) and js.max() <= math.log(2)
    assert np.all(kl >= 0)
    assert divergences["method"]["averaging"] == "pair_own"
    assert len(result.output_for_node("divergence_matrices", "divergence_per_pair_question")) == 6 * 2

    correlations = result.output_for_node("leakage_correlations")
    assert correlations["leakage"]["available"]
    assert correlations["leakage"]["n_directed_pairs"] == 12
    assert set(correlations["js_vs_cosine"]) == {"layer1", "layer2"}
    precheck = result.output_for_node("cosine_precheck")
    assert set(precheck["in_graph"]["by_layer"]) == {"layer1", "layer2"}
    leakage = correlations["leakage"]
    assert leakage["kl_asymmetry"]["n_unordered_pairs_with_both_directions"] == 6
    assert leakage["js_vs_cosine_as_predictors"]["in_graph"]["layer2"]["n"] == 12
    assert set(leakage["within_source"]["js"]["per_source"]["per_group"]) == set(PERSONAS)
    length = correlations["length_confound"]
    assert length["available"] and length["per_response_mean_js_vs_tokens"]["n"] == 4 * 2
    controlled = length["js_leakage_length_controlled"]
    lengths = pd.read_csv(tmp_path / "data" / "outputs" / "directed_leakage_pairs.csv")["pair_mean_tokens"]
    if lengths.nunique() > 1:
        assert controlled["partial_spearman"]["n"] == 12
    else:  # every response hit max_new_tokens: no length differences to control for
        assert "partial_spearman" not in controlled and "cannot confound" in controlled["note"]
    verdicts = result.output_for_node("kill_gate_verdicts")
    assert verdicts["question_informativeness"]["pair_own"]["n_questions"] == 2

    figures = result.output_for_node("figures")
    for stem in ("js_heatmap", "kl_heatmap", "kl_asymmetry_heatmap", "js_vs_cosine", "js_vs_leakage"):
        assert (tmp_path / "figures" / f"{stem}.png").stat().st_size > 1000, stem
        assert stem in figures["files"]

    _assert_baseline(result, tmp_path, js)

    # Outputs are readable JSON on disk, not pickles.
    on_disk = json.loads((tmp_path / "data" / "outputs" / "divergence_matrices.json").read_text())
    assert on_disk["js_matrix"] == divergences["js_matrix"]


def _assert_baseline(result, tmp_path, js: np.ndarray) -> None:
    """The within-persona baseline of the shipped paraphrases: consistent with the pair JS and its own rows."""
    baseline = result.output_for_node("persona_baseline")
    assert baseline["measured"] and (baseline["n_personas"], baseline["n_pairs"], baseline["n_questions"]) == (4, 6, 2)
    for row in baseline["pairs"]:  # the pair JS compared is the matrix's
        i, j = PERSONAS.index(row["persona_a"]), PERSONAS.index(row["persona_b"])
        assert row["js"] == pytest.approx(js[i, j], rel=1e-12)
        assert row["ratio"] == pytest.approx(row["js"] / ((row["within_a"] + row["within_b"]) / 2), rel=1e-12)
    rows = pd.read_csv(tmp_path / "data" / "outputs" / "persona_baseline_per_response.csv")
    assert len(rows) == 4 * 2 * 2 and not rows["same_prompt_ids"].any()  # 4 personas × 2 questions × 2 paraphrases
    within = rows.groupby(["persona", "question_index"])["js"].mean().groupby("persona").mean()
    for persona in baseline["personas"]:
        assert persona["within_js"] == pytest.approx(within[persona["persona"]], rel=1e-12)
        assert 0 < persona["within_js"] < math.log(2)
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert evaluations["persona_baseline_bounded"].passed
    discrimination = result.output_for_node("kill_gate_verdicts")["discrimination"]
    assert discrimination["evidence"]["within_persona_baseline"]["n_pairs"] == 6
    assert any(note.endswith(baseline["read_first"]) for note in discrimination["notes"])
    metadata = result.asset_materializations_for_node("persona_baseline")[0].metadata
    assert metadata["read_first"].value == baseline["read_first"]
    assert (tmp_path / "figures" / "pair_js_vs_within_persona.png").stat().st_size > 1000


def test_graph_without_leakage_says_so(default_run):
    result, tmp_path = default_run
    assert result.success
    baseline = result.output_for_node("persona_baseline")
    assert baseline == {
        "measured": False,
        "reason": "max_paraphrases is 0 in this run's settings (ops.persona_baseline.config)",
        "read_first": "no within-persona baseline was measured: max_paraphrases is 0 in this run's settings "
        "(ops.persona_baseline.config)",
    }
    within = result.output_for_node("kill_gate_verdicts")["discrimination"]["evidence"]["within_persona_baseline"]
    assert within == {"measured": False, "reason": baseline["reason"]}
    assert not (tmp_path / "figures" / "pair_js_vs_within_persona.png").exists()
    correlations = result.output_for_node("leakage_correlations")
    assert correlations["leakage"]["available"] is False
    assert "no leakage_path" in correlations["leakage"]["note"]
    assert (tmp_path / "figures" / "js_heatmap.png").exists()
    assert not (tmp_path / "figures" / "js_vs_leakage.png").exists()


def test_generations_are_cached_by_content(tiny_model_dir, tmp_path):
    config = run_config(tmp_path)
    first = dg.materialize(
        [eval_set, generations],
        resources={"llm": CpuLLM(model=str(tiny_model_dir)), **storage_resources()},
        run_config=dg.RunConfig(ops={k: v for k, v in config.ops.items() if k in ("eval_set", "generations")}),
    )
    assert first.asset_materializations_for_node("generations")[0].metadata["newly_generated"].value == 8
    more = dict(config.ops)
    more["eval_set"] = {"config": {"personas": PERSONAS, "n_questions": 3}}
    second = dg.materialize(
        [eval_set, generations],
        resources={"llm": CpuLLM(model=str(tiny_model_dir)), **storage_resources()},
        run_config=dg.RunConfig(ops={k: v for k, v in more.items() if k in ("eval_set", "generations")}),
    )
    # Only the new question's 4 responses are generated; the 8 earlier ones come from the cache.
    assert second.asset_materializations_for_node("generations")[0].metadata["newly_generated"].value == 4
    responses = second.output_for_node("generations")["responses"]
    assert [r["token_ids"] for r in responses if r["question_index"] < 2] == [
        r["token_ids"] for r in first.output_for_node("generations")["responses"]
    ]


def test_all_responses_averaging_is_recorded(tiny_model_dir, tmp_path):
    config = run_config(tmp_path, divergence_matrices={"config": {"averaging": "all_responses"}})
    result = materialize(tiny_model_dir, config)
    assert result.success
    divergences = result.output_for_node("divergence_matrices", "divergence_matrices")
    assert divergences["method"]["averaging"] == "all_responses"
    assert divergences["averaging"] == "all_responses"


def test_kill_criteria_fail_without_failing_the_run(tiny_model_dir, tmp_path):
    """Non-blocking kill checks: the run stays green, the evaluation records the failure."""
    # The strictest thresholds the config allows: std ≥ ln 2 is unreachable, any |ρ| > 0 is redundant.
    config = run_config(
        tmp_path, kill_gate_verdicts={"config": {"min_js_std": math.log(2), "max_abs_js_cosine_rho": 0.0}}
    )
    result = materialize(tiny_model_dir, config)
    assert result.success
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert not evaluations["kill_discrimination"].passed
    assert not evaluations["kill_redundancy"].passed
    verdicts = result.output_for_node("kill_gate_verdicts")
    assert verdicts["discrimination"]["killed"] and any("unreachable" in n for n in verdicts["discrimination"]["notes"])


def test_the_original_studys_scoring_rule_is_a_labelled_setting(tiny_model_dir, tmp_path, default_run):
    """6-token responses hit max_new_tokens: the original rule also scores the template's closing
    tokens the model never produced, so its matrices differ; the rule is recorded in the output."""
    ours, _ = default_run  # written into its own directory, apart from this test's tmp_path
    original = materialize(
        tiny_model_dir, run_config(tmp_path, divergence_matrices={"config": {"scoring_rule": "original_template"}})
    )
    assert ours.success and original.success
    a = ours.output_for_node("divergence_matrices", "divergence_matrices")
    b = original.output_for_node("divergence_matrices", "divergence_matrices")
    assert a["method"]["scoring_rule"] == "generated" and b["method"]["scoring_rule"] == "original_template"
    assert original.output_for_node("persona_baseline")["reason"] == (
        "the pair JS was scored under the 'original_template' rule; the baseline is measured under 'generated' only"
    )
    responses = ours.output_for_node("generations")["responses"]
    assert any(r["hit_max_new_tokens"] for r in responses)
    assert not np.allclose(np.array(a["js_matrix"]), np.array(b["js_matrix"]))

    # The ids the earlier study's script scored, computed here as it did (decode, render the text as a
    # string, tokenise, cut at the prompt's length): the count of responses whose ids do not round-trip
    # and the positions averaged per response must be these.
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    evals = original.output_for_node("eval_set")
    prompt_of = {p["name"]: p["prompt"] for p in evals["personas"]}
    closing = tokenizer.encode("<|im_end|>\n", add_special_tokens=False)
    expected_positions, expected_changed = {}, []
    for r in responses:
        messages = [
            {"role": "system", "content": prompt_of[r["persona"]]},
            {"role": "user", "content": evals["questions"][r["question_index"]]},
        ]
        text = tokenizer.decode(r["token_ids"], skip_special_tokens=True, clean_up_tokenization_spaces=False)
        full = tokenizer.encode(
            tokenizer.apply_chat_template([*messages, {"role": "assistant", "content": text}], tokenize=False),
            add_special_tokens=False,
        )
        prompt = tokenizer.encode(
            tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True),
            add_special_tokens=False,
        )
        scored = full[len(prompt) :]
        expected_positions[(r["persona"], r["question_index"])] = len(scored)
        content = r["token_ids"][:-1] if r["token_ids"][-1] == closing[0] else r["token_ids"]
        if full[: len(prompt)] != prompt or scored != content + closing:
            expected_changed.append((r["persona"], r["question_index"]))
    assert expected_changed  # random tokens: some do not survive decoding (the test needs one)
    changed = b["method"]["not_round_tripping"]
    assert b["method"]["responses_not_round_tripping"] == len(expected_changed) == len(changed)
    assert [(c["persona"], c["question_index"]) for c in changed] == expected_changed
    assert "responses_not_round_tripping" not in a["method"]
    metadata = original.asset_materializations_for_node("divergence_matrices")
    metadata = next(m.metadata for m in metadata if m.asset_key == dg.AssetKey("divergence_matrices"))
    assert metadata["responses_not_round_tripping"].value == len(expected_changed)

    ours_rows = ours.output_for_node("divergence_matrices", "divergence_per_response")
    original_rows = original.output_for_node("divergence_matrices", "divergence_per_response")
    assert (ours_rows["n_scored_positions"] == ours_rows["n_tokens"]).all()
    generated = {(r["persona"], r["question_index"]): len(r["token_ids"]) for r in responses}
    for row in original_rows.itertuples():
        assert row.n_scored_positions == expected_positions[(row.generator, row.question_index)]
        assert row.n_tokens == generated[(row.generator, row.question_index)]
    # The autouse fixture's data directory (the default run wrote into its own).
    published = pd.read_csv(tmp_path / "data" / "outputs" / "divergence_per_response.csv")
    assert published["n_scored_positions"].tolist() == original_rows["n_scored_positions"].tolist()
