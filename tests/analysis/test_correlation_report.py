"""Analyses on AnalysisInputs: decomposition and sign statistics, KL asymmetry, length confound,
question informativeness, legacy-folder import on small synthetic folders, JSON round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from persona_assets.analysis import correlation_report as analyses
from persona_assets.analysis.matrices import (
    ALL_RESPONSES,
    LEGACY_MATRIX_COSINE,
    PAIR_OWN,
    AnalysisInputs,
    CosineSet,
)
from persona_assets.analysis.earlier_results import inputs_from_legacy_dir
from persona_assets.runs.errors import InputError
from persona_assets.stats.correlate import (
    MRR,
    STEIGER,
    between_within_decomposition,
    dependent_correlation_test,
    sign_agreement,
)
from persona_assets.runs.storage import read_json, write_json

NAMES = ["a", "b", "c", "d"]


# --- statistics ---------------------------------------------------------------------------------


def test_decomposition_sums_to_pooled_and_matches_scipy() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=40)
    groups = np.repeat(["s1", "s2", "s3", "s4"], 10)
    y = x + np.repeat([0.0, 1.0, 2.0, 3.0], 10) + rng.normal(size=40)
    for method, reference in (("spearman", stats.spearmanr(x, y)[0]), ("pearson", stats.pearsonr(x, y)[0])):
        d = between_within_decomposition(x, y, groups, method=method)
        assert d["pooled_r"] == pytest.approx(reference, abs=1e-12)
        assert d["within_part"] + d["between_part"] == pytest.approx(d["pooled_r"], abs=1e-12)


def test_decomposition_hand_case_pure_between() -> None:
    # Inside each group x and y are uncorrelated; the groups differ in both means.
    x = [0, 1, 0, 1, 10, 11, 10, 11]
    y = [0, 0, 1, 1, 10, 10, 11, 11]
    d = between_within_decomposition(x, y, list("AAAABBBB"), method="pearson")
    assert d["within_r"] == pytest.approx(0.0, abs=1e-12)
    assert d["between_share"] == pytest.approx(1.0)
    # Hand computation: var(x) = var(y) = 25 + 0.25, cov = 25 (all between) → r = 25 / 25.25.
    assert d["pooled_r"] == pytest.approx(25 / 25.25)


def test_sign_agreement_counts_and_binomial_p() -> None:
    result = sign_agreement([1, -2, 3, 0, 5, -1], [2, -1, -3, 4, 1, -0.5])
    # Pair 4 has a zero: left out. Signs agree on pairs 1, 2, 5, 6 and disagree on pair 3.
    assert (result["n"], result["n_agree"]) == (5, 4)
    assert result["binomial_p"] == pytest.approx(2 * (1 + 5) / 32)


# --- synthetic inputs -----------------------------------------------------------------------------


def _inputs(lengths: dict[str, float] | None = None) -> AnalysisInputs:
    rng = np.random.default_rng(0)
    n = len(NAMES)
    js = rng.uniform(0.01, 0.2, size=(n, n))
    js = (js + js.T) / 2
    np.fill_diagonal(js, 0.0)
    kl = rng.uniform(0.02, 0.5, size=(n, n))
    np.fill_diagonal(kl, 0.0)
    cos = 1 - 4 * js + rng.normal(scale=0.05, size=(n, n))
    cos = (cos + cos.T) / 2
    np.fill_diagonal(cos, 1.0)
    leakage = pd.DataFrame(
        [
            (s, t, float(0.9 - 3 * js[i, j] + 0.01 * i))
            for i, s in enumerate(NAMES[:3])
            for j, t in enumerate(NAMES)
            if s != t
        ],
        columns=["source", "target", "rate"],
    )
    per_question = pd.DataFrame(
        [
            (NAMES[i], NAMES[j], q, js[i, j] * (1 + 0.1 * q))
            for i in range(n)
            for j in range(i + 1, n)
            for q in range(3)
        ],
        columns=["persona_a", "persona_b", "question_index", "js"],
    )
    per_response = None
    if lengths is not None:
        per_response = pd.DataFrame(
            [
                (g, q, NAMES[i], NAMES[j], js[i, j], lengths[g])
                for g in NAMES
                for q in range(2)
                for i in range(n)
                for j in range(i + 1, n)
                if g in (NAMES[i], NAMES[j])
            ],
            columns=["generator", "question_index", "persona_a", "persona_b", "js", "n_tokens"],
        )
    return AnalysisInputs(
        origin="run",
        persona_names=NAMES,
        js={PAIR_OWN: js},
        primary_averaging=PAIR_OWN,
        kl=kl,
        kl_averaging=PAIR_OWN,
        cosine_sets={
            "in_graph": CosineSet(
                "in_graph", "mean over the personas of this run", {"layer2": cos, "layer10": cos}, "test"
            )
        },
        leakage=leakage,
        leakage_note="test",
        per_question_js={PAIR_OWN: per_question},
        per_response=per_response,
        length_note="test lengths" if lengths else "no lengths",
    )


def test_kl_asymmetry_counts_each_unordered_pair_once() -> None:
    result, _, directed = analyses.leakage_correlations(_inputs(), n_boot=50, seed=0)
    asym = result["leakage"]["kl_asymmetry"]
    # Sources a, b, c leak into each other: 3 unordered pairs with both directions (not 6 rows).
    assert asym["n_unordered_pairs_with_both_directions"] == 3
    assert asym["signed"]["n"] == 3 and asym["absolute"]["n"] == 3
    assert len(directed) == 9


def test_predictor_comparison_uses_the_same_pairs_and_both_tests() -> None:
    result, _, _ = analyses.leakage_correlations(_inputs(), n_boot=50, seed=0)
    comparison = result["leakage"]["js_vs_cosine_as_predictors"]["in_graph"]["layer2"]
    assert comparison["n"] == 9
    assert comparison["spearman_js_leakage"] == pytest.approx(result["leakage"]["js_vs_leakage"]["spearman_rho"])
    # The two tests on exactly the three Spearman correlations reported beside them (JS enters as −JS).
    r_js, r_cos, r_js_cos = (
        comparison[k] for k in ("spearman_js_leakage", "spearman_cosine_leakage", "spearman_js_cosine")
    )
    for key, method in (("meng_rosenthal_rubin", MRR), ("steiger", STEIGER)):
        expected = dependent_correlation_test(-r_js, r_cos, -r_js_cos, 9, method=method)
        assert comparison[key]["z"] == pytest.approx(expected["z"], rel=1e-12)
        assert comparison[key]["p_two_sided"] == pytest.approx(2 * stats.norm.sf(abs(expected["z"])), rel=1e-9)


def test_length_confound_partial_correlation_and_absence() -> None:
    inputs = _inputs({"a": 10, "b": 40, "c": 25, "d": 70})
    result, _, directed = analyses.leakage_correlations(inputs, n_boot=50, seed=0)
    length = result["length_confound"]
    assert length["available"] and length["per_response_mean_js_vs_tokens"]["n"] == 8
    controlled = length["js_leakage_length_controlled"]
    assert directed["pair_mean_tokens"].iloc[0] == pytest.approx((10 + 40) / 2)  # a → b
    assert controlled["partial_spearman"]["n"] == 9 and controlled["partial_spearman"]["r"] is not None
    without, _, _ = analyses.leakage_correlations(_inputs(), n_boot=50, seed=0)
    assert without["length_confound"] == {"available": False, "note": "no lengths"}


def test_question_informativeness_flags_a_flat_question() -> None:
    rows = []
    pairs = [("a", "b"), ("a", "c"), ("b", "c"), ("a", "d")]
    for k, (x, y) in enumerate(pairs):
        rows += [(x, y, 0, 0.01 * (k + 1)), (x, y, 1, 0.012 * (k + 1)), (x, y, 2, 0.02 + 1e-4 * k)]
    result = analyses.question_informativeness(
        pd.DataFrame(rows, columns=["persona_a", "persona_b", "question_index", "js"]), min_relative_spread=0.5
    )
    assert result["flagged_questions"] == [2]
    q0 = result["per_question"][0]
    assert q0["js_std"] == pytest.approx(np.std([0.01, 0.02, 0.03, 0.04], ddof=1))
    assert q0["spearman_with_other_questions"] == pytest.approx(1.0)


def test_precheck_reports_present_and_missing_layers() -> None:
    inputs = _inputs()
    inputs.cosine_sets["other"] = CosineSet(
        "other", "another centring", {"layer2": inputs.cosine_sets["in_graph"].matrices["layer2"]}, "test"
    )
    result = analyses.cosine_precheck(inputs, n_boot=50, seed=0)
    assert result["other"]["layers_missing"] == ["layer10"] and result["in_graph"]["layers_missing"] == []
    assert result["in_graph"]["rises"] is not None and result["other"]["rises"] is None


def test_inputs_survive_a_json_round_trip_in_order(tmp_path: Path) -> None:
    inputs = _inputs({"a": 10, "b": 40, "c": 25, "d": 70})
    write_json(tmp_path / "x.json", inputs.to_dict())  # sorts keys
    back = AnalysisInputs.from_dict(read_json(tmp_path / "x.json"))
    assert back.cosine_sets["in_graph"].layers == ["layer2", "layer10"]
    np.testing.assert_allclose(back.js[PAIR_OWN], inputs.js[PAIR_OWN])
    pd.testing.assert_frame_equal(back.leakage, inputs.leakage)


# --- legacy folders ---------------------------------------------------------------------------------


def _legacy_folder(tmp_path: Path, *, cosine_names: list[str] | None = None) -> Path:
    """A 3-persona folder in the reference layout: divergences, two cosine matrices, marker_eval."""
    names = ["x", "y", "z"]
    per_prompt = {}
    pair_keys = ["x__y", "x__z", "y__z"]
    for k in range(6):  # 3 responders × 2 questions
        per_prompt[str(k)] = {key: 0.01 * (1 + k % 3) + 0.001 * i for i, key in enumerate(pair_keys)}
    frame = pd.DataFrame(
        [(k, key, v) for k, d in per_prompt.items() for key, v in d.items()], columns=["k", "pair", "js"]
    )
    means = frame.groupby("pair")["js"].mean()
    js = np.zeros((3, 3))
    for key, v in means.items():
        a, b = key.split("__")
        js[names.index(a), names.index(b)] = js[names.index(b), names.index(a)] = v
    kl = js * 2 + np.array([[0, 0.01, 0.02], [0.0, 0, 0.01], [0.03, 0.0, 0]])
    folder = tmp_path / "legacy"
    folder.mkdir()
    (folder / "divergence_matrices.json").write_text(
        json.dumps(
            {
                "js_matrix": js.tolist(),
                "kl_matrix": kl.tolist(),
                "kl_sym_matrix": ((kl + kl.T) / 2).tolist(),
                "kl_asym_matrix": np.abs(kl - kl.T).tolist(),
                "persona_names": names,
                "per_prompt_js": per_prompt,
                "n_prompts": 6,
                "metadata": {"model": "m", "n_personas": 3, "n_questions": 2, "n_response_personas": 3},
            }
        )
    )
    cos = [[1.0, 0.2, -0.5], [0.2, 1.0, 0.1], [-0.5, 0.1, 1.0]]
    for layer in (10, 20):
        (folder / f"cosine_3_l{layer}.json").write_text(
            json.dumps({f"cosine_matrix_l{layer}": cos, "persona_names": cosine_names or names})
        )
    (folder / "marker_eval").mkdir()
    for source, rates in {"x": {"y": 0.3, "z": 0.1}, "y": {"x": 0.2, "z": 0.05}}.items():
        body = {t: {"rate": r, "found": int(r * 200), "total": 200} for t, r in rates.items()}
        (folder / "marker_eval" / f"{source}.json").write_text(json.dumps(body))
    return folder


def test_small_legacy_folder_imports_with_both_averagings(tmp_path: Path) -> None:
    inputs = inputs_from_legacy_dir(_legacy_folder(tmp_path))
    assert inputs.averagings == [PAIR_OWN, ALL_RESPONSES] and inputs.kl_averaging == ALL_RESPONSES
    assert list(inputs.cosine_sets) == [LEGACY_MATRIX_COSINE]
    assert inputs.cosine_sets[LEGACY_MATRIX_COSINE].layers == ["layer10", "layer20"]
    assert inputs.cosine_sets[LEGACY_MATRIX_COSINE].centring == "mean over the 3 personas of the matrix"
    assert len(inputs.leakage) == 4 and inputs.per_response is None and "not available" in inputs.length_note
    assert not np.allclose(inputs.js[PAIR_OWN], inputs.js[ALL_RESPONSES])
    result, _, _ = analyses.leakage_correlations(inputs, n_boot=20, seed=0)
    assert result["length_confound"]["available"] is False
    assert set(result["by_averaging"]) == {PAIR_OWN, ALL_RESPONSES}


def test_legacy_folder_refuses_cosines_of_other_personas(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cosine_3_l10.json: its personas differ"):
        inputs_from_legacy_dir(_legacy_folder(tmp_path, cosine_names=["x", "y", "w"]))


def test_legacy_folder_without_divergences_or_at_all(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such folder"):
        inputs_from_legacy_dir(tmp_path / "absent")
    folder = _legacy_folder(tmp_path)
    (folder / "divergence_matrices.json").unlink()
    with pytest.raises(InputError, match="lacks divergence_matrices.json"):
        inputs_from_legacy_dir(folder)


def test_legacy_js_matrix_must_be_the_all_responses_average(tmp_path: Path) -> None:
    folder = _legacy_folder(tmp_path)
    path = folder / "divergence_matrices.json"
    data = json.loads(path.read_text())
    data["js_matrix"][0][1] = data["js_matrix"][1][0] = data["js_matrix"][0][1] + 0.01
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match="not the all-responses mean"):
        inputs_from_legacy_dir(folder)


def test_legacy_marker_eval_of_other_personas_is_refused_partial_overlap_noted(tmp_path: Path) -> None:
    folder = _legacy_folder(tmp_path)
    marker = folder / "marker_eval"
    (marker / "x.json").write_text(json.dumps({"y": {"rate": 0.3}, "outsider": {"rate": 0.4}}))
    inputs = inputs_from_legacy_dir(folder)
    assert any("1 directed pair(s) of marker_eval involve personas outside" in n for n in inputs.notes)
    for source in ("x", "y"):
        (marker / f"{source}.json").unlink()
    (marker / "pirate.json").write_text(json.dumps({"parrot": {"rate": 0.3}}))
    with pytest.raises(InputError) as info:
        inputs_from_legacy_dir(folder)
    message = str(info.value)
    assert str(marker) in message and "the two sets do not overlap" in message
    assert (
        "personas in the file: parrot, pirate" in message and "personas of divergence_matrices.json: x, y, z" in message
    )


def test_cosine_leakage_file_sharing_no_pair_with_the_matrices_is_named_in_the_precheck() -> None:
    detail = pd.DataFrame(
        [
            (layer, s, t, 0.1 * k + 0.01 * layer, 0.05 * k)
            for layer in (10, 20)
            for k, (s, t) in enumerate(
                [("pirate", "parrot"), ("parrot", "pirate"), ("pirate", "captain"), ("captain", "parrot")]
            )
        ],
        columns=["layer", "source", "target", "cosine", "rate"],
    )
    result = analyses.precheck_from_detail(detail, ["x", "y", "z"], "file centring", n_boot=0, seed=0)
    assert result["all_pairs"]["n_pairs"] == 4  # the file's own pre-check still runs
    note = result["core_pairs"]["note"]
    assert "personas in the file: captain, parrot, pirate" in note and "personas of the matrices: x, y, z" in note
