"""Tests for persona_assets.inputs.formats on small synthetic files, malformed copies, and
the real results of the published study bundled in data/reference_study."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from persona_assets.runs.errors import InputError
from persona_assets.inputs.formats import (
    ALL_RESPONSES,
    CosineLeakageFile,
    CosineMatrix,
    LegacyDivergences,
    all_responses_js_from_per_prompt,
    load_cosine_leakage_file,
    load_cosine_matrix_file,
    load_divergence_matrices_file,
    pair_own_js_from_per_prompt,
)
from persona_assets.inputs.leakage import load_marker_eval_dir
from persona_assets.stats.correlate import correlate

REFERENCE = Path(__file__).resolve().parents[2] / "data" / "reference_study"
CORE_PERSONAS = [
    "software_engineer",
    "kindergarten_teacher",
    "data_scientist",
    "medical_doctor",
    "librarian",
    "french_person",
    "villain",
    "comedian",
    "police_officer",
    "zelthari_scholar",
    "assistant",
]

Mutation = Callable[[dict[str, Any]], None]


def _write(tmp_path: Path, data: Any, name: str = "file.json") -> Path:
    path = tmp_path / name
    # allow_nan: malformed copies deliberately carry NaN, as a careless writer would produce.
    path.write_text(json.dumps(data, allow_nan=True), encoding="utf-8")
    return path


def _reference(name: str) -> Path:
    path = REFERENCE / name
    assert path.exists(), f"the bundled study's results are missing: {path}"
    return path


def _load_raw(name: str) -> dict[str, Any]:
    return json.loads(_reference(name).read_text(encoding="utf-8"))


# --- small synthetic files -------------------------------------------------------------------


def _summary(n_pairs: int) -> dict[str, Any]:
    return {"spearman_rho": 0.5, "spearman_p": 0.2, "pearson_r": 0.4, "pearson_p": 0.3, "n_pairs": n_pairs}


def small_cosine_leakage() -> dict[str, Any]:
    """Two layers, sources a and b, each with three targets."""
    leak = {("a", "b"): 0.5, ("a", "c"): 0.1, ("a", "d"): 0.0, ("b", "a"): 0.3, ("b", "c"): 0.2, ("b", "d"): 1.0}
    cats = {"b": "original", "a": "original", "c": "peer", "d": "peer"}
    out = {}
    for layer, shift in (("layer10", 0.0), ("layer20", 0.1)):
        detail = {
            s: [
                {
                    "persona": t,
                    "cosine_sim": round(0.2 * k - 0.3 + shift, 4),
                    "leakage_rate": leak[(s, t)],
                    "category": cats[t],
                }
                for k, t in enumerate(x for x in "abcd" if x != s)
            ]
            for s in ("a", "b")
        }
        out[layer] = {
            "a": _summary(3),
            "b": _summary(3),
            "_aggregate": _summary(6),
            "_per_category": {
                "original": {"spearman_rho": 1.0, "spearman_p": 0.0, "n_pairs": 2},
                "peer": {"spearman_rho": -0.2, "spearman_p": 0.7, "n_pairs": 4},
            },
            "_per_source_detail": detail,
        }
    return out


def small_cosine_matrix() -> dict[str, Any]:
    return {
        "cosine_matrix_l15": [[1.0, 0.2, -0.5], [0.2, 1.0, 0.1], [-0.5, 0.1, 1.0]],
        "persona_names": ["a", "b", "c"],
    }


SMALL_NAMES = ["a", "b", "c"]
SMALL_Q = 2  # questions per persona: responses k = 0..5, k // 2 = responder index


def _small_per_prompt_value(k: int, pair: str) -> float:
    return 0.01 * (k + 1) + {"a__b": 0.0, "a__c": 0.1, "b__c": 0.2}[pair]


def small_divergences() -> dict[str, Any]:
    pairs = ["a__b", "a__c", "b__c"]
    per_prompt = {str(k): {p: _small_per_prompt_value(k, p) for p in pairs} for k in range(6)}
    js = np.zeros((3, 3))
    for p in pairs:
        i, j = (SMALL_NAMES.index(x) for x in p.split("__"))
        js[i, j] = js[j, i] = np.mean([per_prompt[str(k)][p] for k in range(6)])
    kl = np.array([[0.0, 0.1, 0.4], [0.2, 0.0, 0.3], [0.5, 0.1, 0.0]])
    return {
        "js_matrix": js.tolist(),
        "kl_matrix": kl.tolist(),
        "kl_sym_matrix": ((kl + kl.T) / 2).tolist(),
        "kl_asym_matrix": np.abs(kl - kl.T).tolist(),
        "persona_names": list(SMALL_NAMES),
        "per_prompt_js": per_prompt,
        "n_prompts": 6,
        "metadata": {"model": "toy", "n_personas": 3, "n_questions": SMALL_Q, "n_response_personas": 3},
    }


def test_small_cosine_leakage_loads(tmp_path: Path) -> None:
    loaded = load_cosine_leakage_file(_write(tmp_path, small_cosine_leakage()))
    assert isinstance(loaded, CosineLeakageFile)
    assert loaded.layers == [10, 20]
    assert set(loaded.per_layer[20]) == {"a", "b", "_aggregate", "_per_category"}
    assert list(loaded.detail.columns) == ["layer", "source", "target", "cosine", "leakage", "category"]
    assert len(loaded.detail) == 12
    assert loaded.n_personas == 4
    assert loaded.centring == "mean over all personas in the file (N=4)"
    row = loaded.detail.query("layer == 20 and source == 'b' and target == 'd'").iloc[0]
    assert row["leakage"] == 1.0 and row["category"] == "peer"
    assert load_cosine_leakage_file(_write(tmp_path, small_cosine_leakage()), require_layers=[10, 20]).layers == [
        10,
        20,
    ]


def test_small_cosine_matrix_loads(tmp_path: Path) -> None:
    loaded = load_cosine_matrix_file(_write(tmp_path, small_cosine_matrix()), known_personas=["a", "b", "c", "d"])
    assert isinstance(loaded, CosineMatrix)
    assert loaded.layer == 15 and loaded.persona_names == ["a", "b", "c"]
    assert loaded.matrix.shape == (3, 3) and loaded.matrix[0, 2] == -0.5
    assert loaded.centring == "mean over the 3 personas of the matrix"


def test_small_divergences_decode_and_averaging(tmp_path: Path) -> None:
    loaded = load_divergence_matrices_file(_write(tmp_path, small_divergences()))
    assert isinstance(loaded, LegacyDivergences)
    assert loaded.averaging == ALL_RESPONSES and loaded.n_questions == 2
    frame = loaded.per_prompt_js
    assert list(frame.columns) == [
        "response_index",
        "response_persona",
        "question_index",
        "persona_a",
        "persona_b",
        "js",
    ]
    assert len(frame) == 6 * 3
    row = frame[(frame.response_index == 3) & (frame.persona_a == "a") & (frame.persona_b == "c")]
    assert row[["response_persona", "question_index"]].iloc[0].tolist() == ["b", 1]
    assert row["js"].iloc[0] == pytest.approx(0.04 + 0.1)

    all_resp = all_responses_js_from_per_prompt(frame, SMALL_NAMES)
    np.testing.assert_allclose(all_resp, loaded.js, rtol=1e-12)
    own = pair_own_js_from_per_prompt(frame, SMALL_NAMES)
    # Pair a/b: a wrote k = 0, 1 and b wrote k = 2, 3; value = 0.01 (k + 1).
    a_side, b_side = (0.01 + 0.02) / 2, (0.03 + 0.04) / 2
    assert own[0, 1] == pytest.approx((a_side + b_side) / 2)
    # Pair b/c: b wrote k = 2, 3; c wrote k = 4, 5; offset 0.2.
    assert own[1, 2] == pytest.approx(((0.03 + 0.04) / 2 + (0.05 + 0.06) / 2) / 2 + 0.2)
    assert own[2, 1] == own[1, 2] and np.all(np.diag(own) == 0)


def test_pair_own_weights_directions_equally_and_accepts_either_order() -> None:
    rows = [
        ("a", "a", "b", 0.1),
        ("a", "a", "b", 0.1),
        ("a", "a", "b", 0.1),
        ("b", "b", "a", 0.4),  # written B__A: pools with A__B
        ("c", "a", "b", 9.0),  # c's response is not the a/b pair's own
        ("a", "a", "c", 0.2),
        ("c", "a", "c", 0.6),
        ("b", "b", "c", 0.3),
        ("c", "c", "b", 0.5),
    ]
    frame = pd.DataFrame(rows, columns=["response_persona", "persona_a", "persona_b", "js"])
    own = pair_own_js_from_per_prompt(frame, ["a", "b", "c"])
    # Three a-responses at 0.1 and one b-response at 0.4 count as 0.1 and 0.4, equally.
    expected = np.array([[0.0, 0.25, 0.4], [0.25, 0.0, 0.4], [0.4, 0.4, 0.0]])
    np.testing.assert_allclose(own, expected, rtol=1e-12)
    everything = all_responses_js_from_per_prompt(frame, ["a", "b", "c"])
    assert everything[0, 1] == pytest.approx((0.3 + 0.4 + 9.0) / 5)
    with pytest.raises(InputError, match="no values for pair a / d"):
        all_responses_js_from_per_prompt(frame, ["a", "b", "c", "d"])


@pytest.mark.parametrize(
    ("frame", "fragment"),
    [
        (pd.DataFrame({"response_persona": ["a"], "persona_a": ["a"], "persona_b": ["b"]}), "missing column(s) js"),
        (
            pd.DataFrame({"response_persona": ["a"], "persona_a": ["a"], "persona_b": ["z"], "js": [0.1]}),
            "unknown persona(s) in persona_b: z",
        ),
        (pd.DataFrame({"response_persona": ["a"], "persona_a": ["a"], "persona_b": ["b"], "js": [np.nan]}), "NaN"),
        (
            pd.DataFrame({"response_persona": ["a"], "persona_a": ["a"], "persona_b": ["b"], "js": [0.1]}),
            "lacks responses from one of its two personas",
        ),
    ],
)
def test_pair_own_rejects_bad_frames(frame: pd.DataFrame, fragment: str) -> None:
    with pytest.raises(InputError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        pair_own_js_from_per_prompt(frame, ["a", "b"])


# --- malformed copies ------------------------------------------------------------------------


def _set(path: list[Any], value: Any) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _delete(path: list[Any]) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        target = doc
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return mutate


def _rename_key(old: str, new: str) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        doc[new] = doc.pop(old)

    return mutate


def _drop_first_target(layer: str, source: str) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        doc[layer]["_per_source_detail"][source].pop(0)
        doc[layer][source]["n_pairs"] -= 1
        doc[layer]["_aggregate"]["n_pairs"] -= 1
        doc[layer].pop("_per_category")

    return mutate


DETAIL_0 = ["layer20", "_per_source_detail", "a", 0]

COSINE_LEAKAGE_CASES = [
    ("bad key", _rename_key("layer20", "layer_20"), "bad key 'layer_20'"),
    ("duplicate layer", lambda d: d.update(layer020=copy.deepcopy(d["layer20"])), "layer 20 appears under two keys"),
    ("layer not an object", _set(["layer20"], [1, 2]), "layer20 must be an object"),
    ("no detail", _delete(["layer20", "_per_source_detail"]), "lacks _per_source_detail"),
    ("source without detail", _delete(["layer20", "_per_source_detail", "b"]), "differ from sources with detail"),
    ("no aggregate", _delete(["layer20", "_aggregate"]), "lacks _aggregate"),
    ("missing target in one layer", _drop_first_target("layer20", "a"), "covers different pairs"),
    ("NaN cosine", _set(DETAIL_0 + ["cosine_sim"], float("nan")), "must be a finite number"),
    ("cosine > 1", _set(DETAIL_0 + ["cosine_sim"], 1.5), "cosine_sim=1.5 outside"),
    ("negative leakage", _set(DETAIL_0 + ["leakage_rate"], -0.1), "leakage_rate=-0.1 outside"),
    ("string leakage", _set(DETAIL_0 + ["leakage_rate"], "0.5"), "must be a finite number"),
    ("missing field", _delete(DETAIL_0 + ["cosine_sim"]), "lacks cosine_sim"),
    ("self pair", _set(DETAIL_0 + ["persona"], "a"), "source paired with itself"),
    ("duplicate target", _set(DETAIL_0 + ["persona"], "c"), "listed twice"),
    (
        "leakage differs by layer",
        _set(DETAIL_0 + ["leakage_rate"], 0.77),
        "different leakage or category across layers",
    ),
    ("n_pairs mismatch", _set(["layer20", "a", "n_pairs"], 4), "n_pairs=4 but 3 pairs"),
    ("aggregate n_pairs mismatch", _set(["layer20", "_aggregate", "n_pairs"], 5), "_aggregate.n_pairs=5"),
    (
        "category n_pairs mismatch",
        _set(["layer20", "_per_category", "peer", "n_pairs"], 3),
        "_per_category.peer.n_pairs=3",
    ),
    ("NaN rho", _set(["layer20", "a", "spearman_rho"], float("nan")), "must be a finite number"),
    ("p > 1", _set(["layer20", "a", "pearson_p"], 1.5), "pearson_p=1.5 outside"),
    ("missing summary field", _delete(["layer20", "b", "pearson_r"]), "lacks pearson_r"),
]


@pytest.mark.parametrize(
    ("label", "mutate", "fragment"), COSINE_LEAKAGE_CASES, ids=[c[0] for c in COSINE_LEAKAGE_CASES]
)
def test_malformed_cosine_leakage(tmp_path: Path, label: str, mutate: Mutation, fragment: str) -> None:
    doc = small_cosine_leakage()
    mutate(doc)
    path = _write(tmp_path, doc)
    with pytest.raises(InputError) as info:
        load_cosine_leakage_file(path)
    assert str(path) in str(info.value)
    assert fragment in str(info.value)


def test_cosine_leakage_missing_required_layer(tmp_path: Path) -> None:
    path = _write(tmp_path, small_cosine_leakage())
    with pytest.raises(InputError, match="missing layer\\(s\\) 25") as info:
        load_cosine_leakage_file(path, require_layers=[10, 20, 25])
    assert str(info.value).startswith(f"{path}: ")  # the file is named


def _matrix_key(doc: dict[str, Any]) -> str:
    return next(k for k in doc if k.startswith("cosine_matrix"))


def _mutate_matrix(fn: Callable[[list[list[float]]], None]) -> Mutation:
    return lambda doc: fn(doc[_matrix_key(doc)])


COSINE_MATRIX_CASES = [
    ("bad key", _rename_key("cosine_matrix_l15", "cosine_matrix_15"), "bad key(s) 'cosine_matrix_15'"),
    ("two matrices", lambda d: d.update(cosine_matrix_l20=d["cosine_matrix_l15"]), "exactly one"),
    ("no names", _delete(["persona_names"]), "lacks persona_names"),
    ("wrong shape", _mutate_matrix(lambda m: m.pop()), "must be 3 x 3"),
    ("ragged", _mutate_matrix(lambda m: m[1].pop()), "must be 3 x 3"),
    ("extra name", lambda d: d["persona_names"].append("d"), "must be 4 x 4"),
    ("repeated name", _set(["persona_names", 2], "a"), "repeats persona(s) a"),
    ("empty name", _set(["persona_names", 1], ""), "persona_names[1] must be a non-empty string"),
    ("NaN", _mutate_matrix(lambda m: m[0].__setitem__(1, float("nan"))), "is not finite"),
    ("not a number", _mutate_matrix(lambda m: m[0].__setitem__(1, "x")), "is not a number"),
    ("asymmetric", _mutate_matrix(lambda m: m[0].__setitem__(1, 0.2001)), "not symmetric"),
    ("diagonal", _mutate_matrix(lambda m: m[1].__setitem__(1, 0.9)), "diagonal must be 1.0"),
    ("out of range", _mutate_matrix(lambda m: (m[0].__setitem__(2, -1.2), m[2].__setitem__(0, -1.2))), "outside [-1"),
    ("top-level list", lambda d: None, "expected a JSON object"),
]


@pytest.mark.parametrize(("label", "mutate", "fragment"), COSINE_MATRIX_CASES, ids=[c[0] for c in COSINE_MATRIX_CASES])
def test_malformed_cosine_matrix(tmp_path: Path, label: str, mutate: Mutation, fragment: str) -> None:
    doc: Any = small_cosine_matrix()
    mutate(doc)
    if label == "top-level list":
        doc = [doc]
    path = _write(tmp_path, doc)
    with pytest.raises(InputError) as info:
        load_cosine_matrix_file(path)
    assert str(path) in str(info.value)
    assert fragment in str(info.value)


def test_cosine_matrix_unknown_persona_and_bad_json(tmp_path: Path) -> None:
    path = _write(tmp_path, small_cosine_matrix())
    with pytest.raises(InputError, match="unknown persona\\(s\\) c"):
        load_cosine_matrix_file(path, known_personas=["a", "b"])
    broken = tmp_path / "broken.json"
    broken.write_text('{"cosine_matrix_l15": [[1.0', encoding="utf-8")
    with pytest.raises(InputError, match="not valid JSON"):
        load_cosine_matrix_file(broken)
    with pytest.raises(InputError, match="no such file"):
        load_cosine_matrix_file(tmp_path / "absent.json")


def _per_prompt(k: int) -> list[Any]:
    return ["per_prompt_js", str(k)]


def _rename_pair(k: int, old: str, new: str) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        entry = doc["per_prompt_js"][str(k)]
        entry[new] = entry.pop(old)

    return mutate


def _rename_key_in(path: list[Any], old: str, new: str) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        target = doc
        for key in path:
            target = target[key]
        target[new] = target.pop(old)

    return mutate


DIVERGENCE_CASES = [
    ("missing matrix", _delete(["js_matrix"]), "lacks js_matrix"),
    ("wrong shape", lambda d: d["js_matrix"].pop(), "js_matrix must be 3 x 3"),
    ("asymmetric js", _set(["js_matrix", 0, 1], 0.5), "js_matrix is not symmetric"),
    ("js diagonal", lambda d: d["js_matrix"][1].__setitem__(1, 0.01), "diagonal must be 0.0"),
    (
        "js above ln 2",
        lambda d: (d["js_matrix"][0].__setitem__(1, 0.8), d["js_matrix"][1].__setitem__(0, 0.8)),
        "js_matrix[0][1]=0.8 outside [0, ln 2]",
    ),
    ("NaN in kl", _set(["kl_matrix", 0, 2], float("nan")), "kl_matrix[0][2] is not finite"),
    ("negative kl", lambda d: d["kl_matrix"][0].__setitem__(1, -0.1), "kl_matrix[0][1]=-0.1"),
    ("kl_sym inconsistent", _set(["kl_sym_matrix", 0, 1], 0.9), "(KL + KLᵀ)/2"),
    ("kl_asym inconsistent", _set(["kl_asym_matrix", 2, 0], 0.0), "|KL − KLᵀ|"),
    ("unknown persona in pair", _rename_pair(2, "a__c", "a__zed"), "unknown persona(s) 'zed' in pair key 'a__zed'"),
    ("reversed pair", _rename_pair(2, "a__c", "c__a"), "not in persona order"),
    ("bad pair key", _rename_pair(2, "a__c", "a-c"), "bad pair key 'a-c'"),
    ("missing pair", _delete(_per_prompt(4) + ["b__c"]), "lacks 1 pair(s), e.g. 'b__c'"),
    ("bad response key", _rename_key_in(["per_prompt_js"], "5", "x"), "bad key(s) 'x'"),
    ("missing response", _delete(_per_prompt(5)), "lacks response(s) 5 of 6"),
    ("NaN per prompt", _set(_per_prompt(1) + ["a__b"], float("nan")), "must be a finite number"),
    ("negative per prompt", _set(_per_prompt(1) + ["a__b"], -0.2), "outside [0, ln 2]"),
    ("unknown name list", _set(["persona_names", 2], 7), "persona_names[2] must be"),
    ("n_prompts not a multiple", _set(["n_prompts"], 7), "n_prompts=7 is not a multiple"),
    ("n_questions mismatch", _set(["metadata", "n_questions"], 3), "metadata.n_questions=3"),
    ("responders mismatch", _set(["metadata", "n_response_personas"], 2), "says 2 response personas"),
    ("n_prompts type", _set(["n_prompts"], "six"), "n_prompts must be a positive integer"),
]


@pytest.mark.parametrize(("label", "mutate", "fragment"), DIVERGENCE_CASES, ids=[c[0] for c in DIVERGENCE_CASES])
def test_malformed_divergences(tmp_path: Path, label: str, mutate: Mutation, fragment: str) -> None:
    doc = small_divergences()
    mutate(doc)
    path = _write(tmp_path, doc)
    with pytest.raises(InputError) as info:
        load_divergence_matrices_file(path)
    assert str(path) in str(info.value)
    assert fragment in str(info.value)


def test_divergences_n_prompts_not_a_multiple(tmp_path: Path) -> None:
    doc = small_divergences()
    doc["n_prompts"] = 7
    del doc["metadata"]
    path = _write(tmp_path, doc)
    with pytest.raises(InputError, match="n_prompts=7 is not a multiple of the 3"):
        load_divergence_matrices_file(path)


def test_divergences_unknown_persona_against_known_list(tmp_path: Path) -> None:
    path = _write(tmp_path, small_divergences())
    with pytest.raises(InputError, match="unknown persona\\(s\\) b, c"):
        load_divergence_matrices_file(path, known_personas=["a"])


# --- the real reference results --------------------------------------------------------------


@pytest.fixture(scope="module")
def real_cosine_leakage() -> CosineLeakageFile:
    return load_cosine_leakage_file(_reference("cosine_leakage_correlation.json"), require_layers=[10, 15, 20, 25])


@pytest.fixture(scope="module")
def real_divergences() -> LegacyDivergences:
    return load_divergence_matrices_file(_reference("divergence_matrices.json"), known_personas=CORE_PERSONAS)


def test_real_cosine_leakage(real_cosine_leakage: CosineLeakageFile) -> None:
    loaded = real_cosine_leakage
    assert loaded.layers == [10, 15, 20, 25]
    assert loaded.n_personas == 111
    assert loaded.centring == "mean over all personas in the file (N=111)"
    assert len(loaded.detail) == 4 * 550
    assert (loaded.detail.groupby(["layer", "source"]).size() == 110).all()
    assert (loaded.detail.query("layer == 20")["category"] == "original").sum() == 50
    assert loaded.per_layer[20]["_aggregate"]["spearman_rho"] == pytest.approx(0.6016)
    assert loaded.per_layer[20]["villain"]["n_pairs"] == 110


def test_real_cosine_leakage_summaries_recompute_from_detail(
    real_cosine_leakage: CosineLeakageFile,
) -> None:
    # Cosines were rounded to 4 decimals, so recomputed coefficients agree to ~1e-3.
    for (layer, source), sub in real_cosine_leakage.detail.groupby(["layer", "source"]):
        summary = real_cosine_leakage.per_layer[layer][source]
        c = correlate(sub["cosine"], sub["leakage"], n_boot=0)
        assert c.spearman_rho == pytest.approx(summary["spearman_rho"], abs=2e-3)
        assert c.pearson_r == pytest.approx(summary["pearson_r"], abs=2e-3)


def test_real_cosine_leakage_matches_marker_eval(real_cosine_leakage: CosineLeakageFile) -> None:
    marker = load_marker_eval_dir(_reference("marker_eval"))
    layer20 = real_cosine_leakage.detail.query("layer == 20")
    merged = layer20.merge(marker, on=["source", "target"], validate="one_to_one")
    assert len(merged) == 550
    np.testing.assert_array_equal(merged["leakage"], merged["rate"])
    assert (merged["category_x"] == merged["category_y"]).all()


def test_real_cosine_matrix() -> None:
    loaded = load_cosine_matrix_file(_reference("cosine_11_l20.json"), known_personas=CORE_PERSONAS)
    assert loaded.layer == 20
    assert loaded.persona_names == CORE_PERSONAS
    assert loaded.matrix.shape == (11, 11)
    np.testing.assert_allclose(np.diag(loaded.matrix), 1.0, atol=1e-6)
    assert loaded.centring == "mean over the 11 personas of the matrix"


def test_real_divergences(real_divergences: LegacyDivergences) -> None:
    d = real_divergences
    assert d.persona_names == CORE_PERSONAS
    assert d.n_questions == 20 and d.averaging == "all_responses"
    assert d.metadata["model"] == "Qwen/Qwen2.5-7B-Instruct"
    for m in (d.js, d.kl, d.kl_sym, d.kl_asym):
        assert m.shape == (11, 11)
    assert len(d.per_prompt_js) == 220 * 55
    by_k = d.per_prompt_js.drop_duplicates("response_index").set_index("response_index")
    assert by_k.loc[0, "response_persona"] == "software_engineer"
    assert by_k.loc[19, ["response_persona", "question_index"]].tolist() == ["software_engineer", 19]
    assert by_k.loc[20, ["response_persona", "question_index"]].tolist() == ["kindergarten_teacher", 0]
    assert by_k.loc[219, ["response_persona", "question_index"]].tolist() == ["assistant", 19]
    assert (d.per_prompt_js.groupby("response_persona").size() == 20 * 55).all()


def test_real_all_responses_average_reproduces_js_matrix(
    real_divergences: LegacyDivergences,
) -> None:
    recomputed = all_responses_js_from_per_prompt(real_divergences.per_prompt_js, real_divergences.persona_names)
    np.testing.assert_allclose(recomputed, real_divergences.js, rtol=1e-12, atol=1e-15)


def test_real_pair_own_average_differs_from_all_responses(
    real_divergences: LegacyDivergences,
) -> None:
    names = real_divergences.persona_names
    own = pair_own_js_from_per_prompt(real_divergences.per_prompt_js, names)
    upper = np.triu_indices(len(names), 1)
    own_u, all_u = own[upper], real_divergences.js[upper]
    assert np.allclose(own, own.T) and np.all(np.diag(own) == 0)
    # Same ordering in broad strokes, but not the same numbers: the averaging matters.
    assert np.corrcoef(own_u, all_u)[0, 1] > 0.8
    assert np.abs(own_u - all_u).max() > 0.02
    assert own_u.mean() > all_u.mean()
    # Spot-check one pair by hand: villain / zelthari_scholar from their own 40 responses.
    v, z = names.index("villain"), names.index("zelthari_scholar")
    frame = real_divergences.per_prompt_js
    pair = frame[(frame.persona_a == "villain") & (frame.persona_b == "zelthari_scholar")]
    by = pair.groupby("response_persona")["js"].mean()
    assert own[v, z] == pytest.approx((by["villain"] + by["zelthari_scholar"]) / 2, rel=1e-12)
    assert math.isclose(real_divergences.js[v, z], pair["js"].mean(), rel_tol=1e-12)


@pytest.mark.parametrize(
    ("name", "loader", "mutate", "fragment"),
    [
        (
            "divergence_matrices.json",
            load_divergence_matrices_file,
            _set(["js_matrix", 3, 4], 0.5),
            "js_matrix is not symmetric",
        ),
        (
            "divergence_matrices.json",
            load_divergence_matrices_file,
            _rename_pair(7, "villain__comedian", "villain__jester"),
            "unknown persona(s) 'jester'",
        ),
        (
            "divergence_matrices.json",
            load_divergence_matrices_file,
            lambda d: [row.pop() for row in d["kl_matrix"]],
            "kl_matrix must be 11 x 11",
        ),
        ("cosine_11_l20.json", load_cosine_matrix_file, _set(["cosine_matrix_l20", 2, 5], float("nan")), "not finite"),
        ("cosine_11_l20.json", load_cosine_matrix_file, lambda d: d["persona_names"].pop(), "must be 10 x 10"),
        (
            "cosine_leakage_correlation.json",
            load_cosine_leakage_file,
            _delete(["layer25", "_per_source_detail", "villain"]),
            "differ from sources with detail",
        ),
        ("cosine_leakage_correlation.json", load_cosine_leakage_file, _rename_key("layer25", "L25"), "bad key 'L25'"),
    ],
)
def test_malformed_copies_of_real_files(tmp_path: Path, name: str, loader, mutate: Mutation, fragment: str) -> None:
    doc = _load_raw(name)
    mutate(doc)
    path = _write(tmp_path, doc, name)
    with pytest.raises(InputError) as info:
        loader(path)
    assert str(path) in str(info.value)
    assert fragment in str(info.value)
