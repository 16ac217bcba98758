"""Kill gates, centred cosine, eval-set validation, generation cache, alert delivery, progress."""

from __future__ import annotations


import json
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from persona_assets.runs.alerts import append_jsonl, post_webhook
from persona_assets.measure.cosine import centred_cosine, default_layers
from persona_assets.runs.errors import InputError
from persona_assets.inputs.eval_set import build_eval_set
from persona_assets.runs.generation_cache import GenerationCache, generation_key
from persona_assets.analysis.kill_criteria import discrimination_verdict, redundancy_verdict
from persona_assets.runs.progress import ProgressReporter


# --------------------------------------------------------------------------- kill gates
def test_discrimination_passes_for_spread_values():
    verdict = discrimination_verdict(np.array([0.05, 0.1, 0.2, 0.3]), min_std=0.05, min_ratio=3)
    assert not verdict["killed"]
    assert verdict["evidence"]["max_min_ratio"] == pytest.approx(6.0)
    assert verdict["evidence"]["js_std"] == pytest.approx(np.std([0.05, 0.1, 0.2, 0.3], ddof=1))


def test_discrimination_killed_by_narrow_ratio_and_notes_unreachable_std():
    verdict = discrimination_verdict(np.array([0.02, 0.03, 0.04]), min_std=0.05, min_ratio=3)
    assert verdict["killed"]
    assert verdict["evidence"]["ratio_below_threshold"] and verdict["evidence"]["std_below_threshold"]
    assert any("unreachable by construction" in n for n in verdict["notes"])
    assert verdict["evidence"]["coefficient_of_variation"] == pytest.approx(0.01 / 0.03)


def test_redundancy_verdict():
    assert redundancy_verdict({"layer10": 0.5, "layer20": -0.85}, max_abs_rho=0.8)["killed"]
    calm = redundancy_verdict({"layer10": 0.5, "layer20": None}, max_abs_rho=0.8)
    assert not calm["killed"] and calm["judged"]
    assert not redundancy_verdict({"layer10": None}, max_abs_rho=0.8)["judged"]


# ------------------------------------------------------------------------------ cosine
def test_default_layers_match_the_28_layer_spread():
    assert default_layers(28) == [10, 15, 20, 25]
    assert default_layers(30) == [11, 16, 21, 27]
    assert all(1 <= layer <= 2 for layer in default_layers(2))


@given(arrays(np.float64, st.tuples(st.integers(3, 8), st.integers(2, 6)), elements=st.floats(-10, 10)))
@settings(max_examples=60, deadline=None)
def test_centred_cosine_properties(centroids):
    cosine = centred_cosine(centroids)
    assert np.allclose(cosine, cosine.T)
    assert np.all(np.diag(cosine) == 1.0)
    assert np.all(np.abs(cosine) <= 1.0)


def test_centred_cosine_known_answer():
    # Two personas mirror each other around the mean: cosine −1 after centring.
    cosine = centred_cosine(np.array([[1.0, 2.0], [3.0, 2.0]]))
    assert cosine[0, 1] == pytest.approx(-1.0)


# ---------------------------------------------------------------------------- eval set
def write(path, text):
    path.write_text(text)
    return path


def test_eval_set_subsets_and_validates(tmp_path):
    personas = write(
        tmp_path / "p.yaml", "personas:\n  - {name: a, prompt: A}\n  - {name: b, prompt: B}\n  - {name: c, prompt: C}\n"
    )
    questions = write(tmp_path / "q.yaml", "questions: [one, two, three]\n")
    evals = build_eval_set(personas, questions, persona_subset=["c", "a"], n_questions=2)
    assert evals.persona_names == ["c", "a"] and evals.questions == ["one", "two"]


@pytest.mark.parametrize(
    "personas_yaml, message",
    [
        ("", "non-empty list"),
        ("personas: []\n", "non-empty list"),
        ("personas:\n  - {name: a, prompt: A}\n  - {name: a, prompt: B}\n", "duplicate persona name 'a'"),
        ("personas:\n  - {name: a, prompt: A}\n  - {name: b}\n", "persona 'b' has no prompt"),
        (
            "personas:\n  - {name: 'a/b', prompt: A}\n  - {name: b, prompt: B}\n",
            "name 'a/b' breaks the rule: a persona name starts with a letter, digit or '_'",
        ),
        ("personas:\n  - {name: a, prompt: A}\n", "at least 2 personas"),
        ("personas: [\n", "not valid YAML"),
    ],
)
def test_bad_personas_files(tmp_path, personas_yaml, message):
    personas = write(tmp_path / "p.yaml", personas_yaml)
    questions = write(tmp_path / "q.yaml", "questions: [one]\n")
    with pytest.raises(InputError, match=re.escape(message)) as raised:
        build_eval_set(personas, questions, persona_subset=[], n_questions=1)
    assert str(raised.value).startswith(f"{personas}: ")  # the file is named first


def test_missing_personas_file_is_named(tmp_path):
    questions = write(tmp_path / "q.yaml", "questions: [one]\n")
    with pytest.raises(InputError, match=r"nope\.yaml: file not found"):
        build_eval_set(tmp_path / "nope.yaml", questions, persona_subset=[], n_questions=1)


@pytest.mark.parametrize(
    "questions_yaml, message",
    [
        ("", "non-empty list"),
        ("questions: []\n", "non-empty list"),
        ("questions: [x, '  ']\n", "question #2 is empty"),
        ("questions: [x, ' x ']\n", "duplicate question"),
    ],
)
def test_bad_questions_files(tmp_path, questions_yaml, message):
    personas = write(tmp_path / "p.yaml", "personas:\n  - {name: a, prompt: A}\n  - {name: b, prompt: B}\n")
    questions = write(tmp_path / "q.yaml", questions_yaml)
    with pytest.raises(InputError, match=message) as raised:
        build_eval_set(personas, questions, persona_subset=[], n_questions=1)
    assert str(raised.value).startswith(f"{questions}: ")  # the file is named first


def test_bad_questions_and_settings(tmp_path):
    personas = write(tmp_path / "p.yaml", "personas:\n  - {name: a, prompt: A}\n  - {name: b, prompt: B}\n")
    with pytest.raises(InputError, match=r"missing\.yaml: file not found"):
        build_eval_set(personas, tmp_path / "missing.yaml", persona_subset=[], n_questions=1)
    dupes = write(tmp_path / "q.yaml", "questions: [x, x]\n")
    with pytest.raises(InputError, match=r"q\.yaml: duplicate question 'x'"):
        build_eval_set(personas, dupes, persona_subset=[], n_questions=1)
    ok = write(tmp_path / "q2.yaml", "questions: [x, y]\n")
    with pytest.raises(InputError, match=r"n_questions=3 but .*q2\.yaml has only 2"):
        build_eval_set(personas, ok, persona_subset=[], n_questions=3)
    with pytest.raises(InputError, match=r"unknown persona\(s\) \['zzz'\]; .*p\.yaml has \['a', 'b'\]"):
        build_eval_set(personas, ok, persona_subset=["zzz"], n_questions=1)


# -------------------------------------------------------------------- generation cache
def test_generation_key_changes_with_every_input():
    base = dict(
        model_fingerprint="m",
        dtype="float32",
        device_kind="cpu",
        backend="transformers",
        max_new_tokens=8,
        prompt_ids=[1, 2],
    )
    keys = {generation_key(**base)}
    for field, other in [
        ("model_fingerprint", "m2"),
        ("dtype", "bfloat16"),
        ("device_kind", "cuda"),
        ("backend", "vllm"),
        ("max_new_tokens", 9),
        ("prompt_ids", [1, 3]),
    ]:
        keys.add(generation_key(**{**base, field: other}))
    assert len(keys) == 7


def test_generation_cache_roundtrip_and_corrupt_entry(tmp_path):
    cache = GenerationCache(tmp_path)
    assert cache.get("ab" * 32) is None
    cache.put("ab" * 32, {"token_ids": [1, 2], "hit_max_new_tokens": False})
    assert cache.get("ab" * 32) == {"token_ids": [1, 2], "hit_max_new_tokens": False}
    (tmp_path / "cd" / ("cd" * 32 + ".json")).parent.mkdir(parents=True)
    (tmp_path / "cd" / ("cd" * 32 + ".json")).write_text("{not json")
    assert cache.get("cd" * 32) is None


# ------------------------------------------------------------------------------ alerts
def test_jsonl_appends_one_line_per_alert(tmp_path):
    path = tmp_path / "alerts.jsonl"
    append_jsonl(path, {"check": "x"})
    append_jsonl(path, {"check": "y"})
    assert [json.loads(line)["check"] for line in path.read_text().splitlines()] == ["x", "y"]


def test_webhook_down_is_bounded_and_reported():
    result = post_webhook("http://127.0.0.1:9/none", {"check": "x"}, attempts=2, backoff_s=0.01, timeout_s=1)
    assert not result.delivered and result.attempts == 2 and result.error


# ---------------------------------------------------------------------------- progress
def test_progress_reports_rate_and_eta():
    lines = []
    report = ProgressReporter("work", lines.append, every_seconds=0.0, unit="items")
    report(1, 4)
    report(4, 4)
    assert lines[0].startswith("work: 1/4 items (25%)") and "ETA" in lines[0]
    assert "4/4" in lines[-1]


def test_heartbeat_logs_while_a_silent_call_runs_and_stops_after():
    import time

    from persona_assets.runs.progress import Heartbeat

    lines: list[str] = []
    with Heartbeat("generate", lines.append, every_seconds=0.05):
        time.sleep(0.4)
    count = len(lines)
    assert count >= 3 and all(line.startswith("generate: still running, ") for line in lines)
    time.sleep(0.2)
    assert len(lines) == count  # the thread stopped with the block
    quick: list[str] = []
    with Heartbeat("fast", quick.append, every_seconds=10):
        pass
    assert quick == []  # a call shorter than the interval logs nothing
