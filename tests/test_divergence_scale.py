"""Divergences at scale: content-addressed per-response results, incremental runs, shards, kill and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import dagster as dg
import numpy as np
import pytest

from persona_assets.assets.divergence_matrices import divergence_matrices
from persona_assets.assets.eval_set import eval_set
from persona_assets.assets.generations import generations
from persona_assets.measure.divergence_store import DivergenceCache, ResponseJob, scoring_passes, shard_of
from persona_assets.environment import storage_resources
from resources.llm import CpuLLM
from tests.conftest import REPO

PERSONAS = ["software_engineer", "villain", "comedian", "assistant"]


# ----------------------------------------------------------------------------- pure parts
@pytest.mark.parametrize("n_others,max_scorers", [(1, 2), (11, 12), (110, 12), (110, 2), (7, 3)])
def test_pair_own_passes_cover_every_pair_once_within_the_bound(n_others, max_scorers):
    pairs = [(0, o) for o in range(1, n_others + 1)]
    passes = scoring_passes(pairs, max_scorers)
    covered = []
    for scorers, local, positions in passes:
        assert len(scorers) <= max_scorers and scorers[0] == 0
        assert [(scorers[a], scorers[b]) for a, b in local] == [pairs[p] for p in positions]
        covered += positions
    assert sorted(covered) == list(range(len(pairs)))
    # the generator is re-scored once per pass: ceil(others / (max_scorers - 1)) passes
    assert len(passes) == -(-n_others // (max_scorers - 1))


def test_all_pairs_passes_stay_within_the_bound():
    pairs = [(a, b) for a in range(9) for b in range(a + 1, 9)]
    passes = scoring_passes(pairs, 4)
    assert all(len(s) <= 4 for s, _, _ in passes)
    assert sorted(p for _, _, ps in passes for p in ps) == list(range(len(pairs)))
    with pytest.raises(ValueError):
        scoring_passes(pairs, 1)


def test_shards_partition_the_responses():
    jobs = [ResponseJob(f"k{i}", [1] * (i % 5 + 1), {0: [1], 1: [2]}, [(0, 1)]) for i in range(23)]
    lengths = [len(j.response_ids) for j in jobs]
    for n in (1, 2, 3, 8):
        shards = [shard_of(jobs, lengths, k, n) for k in range(n)]
        keys = [j.key for s in shards for j in s]
        assert sorted(keys) == sorted(j.key for j in jobs)
        assert max(len(s) for s in shards) - min(len(s) for s in shards) <= 1


def test_cache_ignores_torn_entries(tmp_path):
    cache = DivergenceCache(tmp_path)
    cache.put("ab" + "0" * 62, {"n_tokens": 3, "pairs": {"x": {"js": 0.1, "kl_ab": 0.2, "kl_ba": 0.3}}})
    assert cache.get("ab" + "0" * 62)["pairs"]["x"]["js"] == 0.1
    torn = tmp_path / "cd" / ("cd" + "1" * 62 + ".json")
    torn.parent.mkdir()
    torn.write_text('{"n_tokens": 3, "pairs": {"x": {"js"')
    assert cache.get("cd" + "1" * 62) is None
    assert cache.get("ef" + "2" * 62) is None


# ------------------------------------------------------------------------- through Dagster
def run(tiny_model_dir, personas, n_questions=2, n_shards=1, divergence=None):
    config = {
        "averaging": "pair_own",
        "max_scorers_per_pass": 3,
        "responses_per_batch": 2,
        "shards": n_shards,
        **(divergence or {}),
    }
    ops = {
        "eval_set": {"config": {"personas": personas, "n_questions": n_questions}},
        "generations": {"config": {"max_new_tokens": 6}},
        "divergence_matrices": {"config": config},
    }
    result = dg.materialize(
        [eval_set, generations, divergence_matrices],
        resources={"llm": CpuLLM(model=str(tiny_model_dir)), **storage_resources()},
        run_config=dg.RunConfig(ops=ops),
    )
    assert result.success
    return result


def meta(result, asset="divergence_matrices"):
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(asset)]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def shard_outputs(result) -> list[dict]:
    by_key = result.output_for_node("divergence_matrices.score_divergence_shard")
    return [by_key[key] for key in sorted(by_key)]


def divergences(result) -> dict:
    return result.output_for_node("divergence_matrices", "divergence_matrices")


def matrices(result):
    out = divergences(result)
    return np.array(out["js_matrix"]), np.array(out["kl_matrix"]), out["persona_names"]


def test_adding_personas_and_questions_scores_only_the_new_work(tiny_model_dir, tmp_path, monkeypatch):
    first = run(tiny_model_dir, PERSONAS[:3])
    assert meta(first)["pairs_scored_now"] == 3 * 2 * 2  # 6 responses × 2 pair-own pairs

    # A 4th persona: its 2 responses (3 pairs each) and one new pair for each of the 6 old responses.
    second = run(tiny_model_dir, PERSONAS)
    m = meta(second)
    assert m["pairs_scored_now"] == 2 * 3 + 6 and m["pairs_from_cache"] == 6 * 2
    assert m["responses_scored_now"] == 8 and m["responses_complete_in_cache"] == 0
    js1, kl1, _ = matrices(first)
    js2, kl2, names = matrices(second)
    assert names == PERSONAS
    assert np.array_equal(js2[:3, :3], js1) and np.array_equal(kl2[:3, :3], kl1)  # old pairs: the cached values

    # A 3rd question: only its 4 new responses.
    third = run(tiny_model_dir, PERSONAS, n_questions=3)
    assert meta(third)["responses_scored_now"] == 4 and meta(third)["responses_complete_in_cache"] == 8

    # Removing a persona recomputes nothing and gives the sub-matrix.
    fourth = run(tiny_model_dir, [PERSONAS[0], PERSONAS[2], PERSONAS[3]], n_questions=3)
    assert meta(fourth)["pairs_scored_now"] == 0 and meta(fourth)["teacher_forced_tokens"] == 0
    js3, kl3, _ = matrices(third)
    js4, kl4, _ = matrices(fourth)
    keep = [0, 2, 3]
    assert np.array_equal(js4, js3[np.ix_(keep, keep)]) and np.array_equal(kl4, kl3[np.ix_(keep, keep)])

    # The incrementally built matrices agree with a fresh run of the whole set (new pairs were
    # scored in other passes, so equal up to float noise of a different padded batch).
    monkeypatch.setenv("PERSONA_DATA_DIR", str(tmp_path / "fresh"))
    fresh = run(tiny_model_dir, PERSONAS)
    js_f, kl_f, _ = matrices(fresh)
    assert meta(fresh)["pairs_scored_now"] == 8 * 3
    np.testing.assert_allclose(js2, js_f, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(kl2, kl_f, rtol=1e-6, atol=1e-9)


def test_pass_size_changes_nothing_but_float_noise(tiny_model_dir, tmp_path, monkeypatch):
    small = run(tiny_model_dir, PERSONAS, divergence={"max_scorers_per_pass": 2})
    monkeypatch.setenv("PERSONA_DATA_DIR", str(tmp_path / "other"))
    large = run(tiny_model_dir, PERSONAS, divergence={"max_scorers_per_pass": 12})
    assert meta(small)["teacher_forced_sequences"] == 8 * 6  # 3 passes of 2 per response
    assert meta(large)["teacher_forced_sequences"] == 8 * 4  # one pass of 4
    np.testing.assert_allclose(matrices(small)[0], matrices(large)[0], rtol=1e-6, atol=1e-9)


def test_two_shards_give_the_one_shard_matrices(tiny_model_dir, tmp_path, monkeypatch):
    one = run(tiny_model_dir, PERSONAS)
    monkeypatch.setenv("PERSONA_DATA_DIR", str(tmp_path / "sharded"))
    two = run(tiny_model_dir, PERSONAS, n_shards=2)
    shards = shard_outputs(two)
    assert [s["shard"] for s in shards] == [0, 1] and [s["responses_scored_now"] for s in shards] == [4, 4]
    assert meta(two)["remainder_responses_scored"] == 0 and meta(two)["shards"] == 2
    for a, b in zip(matrices(one), matrices(two)):
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_shards_are_run_config_and_never_change_the_asset_keys():
    from persona_assets.definitions import defs
    from persona_assets.environment import default_executor_mode, default_gpu_shards
    from persona_assets.executor import default_multiprocess_config

    assert default_gpu_shards({}) == 1 and default_gpu_shards({"PERSONA_GPU_SHARDS": "4"}) == 4
    assert (
        default_executor_mode({}) == "in_process"
        and default_executor_mode({"PERSONA_GPU_SHARDS": "2"}) == "multiprocess"
    )
    assert default_executor_mode({"PERSONA_GPU_SHARDS": "2", "PERSONA_EXECUTOR": "in_process"}) == "in_process"
    with pytest.raises(ValueError, match="PERSONA_GPU_SHARDS"):
        default_gpu_shards({"PERSONA_GPU_SHARDS": "0"})
    limits = default_multiprocess_config()["tag_concurrency_limits"]
    assert {"key": "device", "value": "gpu", "limit": 1} in limits
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    code = (
        "from persona_assets.definitions import defs; "
        "print(sorted(k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()))"
    )
    env = {**os.environ, "PERSONA_GPU_SHARDS": "4", "PERSONA_RESOURCES": "gpu"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(sorted(keys))


# ---------------------------------------------------------------------------- kill and resume
SLOW_RUN = """
import sys, time
import dagster as dg
from persona_assets.assets.divergence_matrices import divergence_matrices
from persona_assets.assets.eval_set import eval_set
from persona_assets.assets.generations import generations
from persona_assets.environment import storage_resources
from resources.llm import CpuLLM

class SlowLLM(CpuLLM):
    def response_divergences(self, *args, **kwargs):
        time.sleep(0.15)  # slow enough for the test to kill it mid-way
        return super().response_divergences(*args, **kwargs)

dg.materialize(
    [eval_set, generations, divergence_matrices],
    resources={"llm": SlowLLM(model=sys.argv[1]), **storage_resources()},
    run_config=dg.RunConfig(ops=%s),
)
"""


def test_killed_run_resumes_to_the_uninterrupted_matrices(tiny_model_dir, tmp_path, monkeypatch):
    ops = {
        "eval_set": {"config": {"personas": PERSONAS, "n_questions": 3}},
        "generations": {"config": {"max_new_tokens": 6}},
        "divergence_matrices": {"config": {"max_scorers_per_pass": 2, "responses_per_batch": 1}},
    }
    killed_dir = tmp_path / "killed"
    script = tmp_path / "slow_run.py"
    script.write_text(SLOW_RUN % json.dumps(ops))
    env = {**os.environ, "PERSONA_DATA_DIR": str(killed_dir), "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, str(script), str(tiny_model_dir)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    cache = DivergenceCache(killed_dir / "cache" / "divergences")
    try:
        deadline = time.monotonic() + 300
        while len(cache) < 3 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL
    done_at_kill = len(cache)
    assert 3 <= done_at_kill < 12, done_at_kill  # killed mid-way through the 12 responses
    for entry in (killed_dir / "cache" / "divergences").glob("*/*.json"):
        json.loads(entry.read_text())  # no torn entries

    restart_ops = dg.RunConfig(ops=ops)
    monkeypatch.setenv("PERSONA_DATA_DIR", str(killed_dir))
    resumed = dg.materialize(
        [eval_set, generations, divergence_matrices],
        resources={"llm": CpuLLM(model=str(tiny_model_dir)), **storage_resources()},
        run_config=restart_ops,
    )
    assert resumed.success
    m = meta(resumed)
    assert m["responses_complete_in_cache"] == done_at_kill and m["responses_scored_now"] == 12 - done_at_kill

    monkeypatch.setenv("PERSONA_DATA_DIR", str(tmp_path / "uninterrupted"))
    whole = dg.materialize(
        [eval_set, generations, divergence_matrices],
        resources={"llm": CpuLLM(model=str(tiny_model_dir)), **storage_resources()},
        run_config=restart_ops,
    )
    assert whole.success and meta(whole)["responses_scored_now"] == 12
    # Equal up to float32 rounding: with shared prefixes, responses scored in other calls (the
    # resumed run's) share forwards with other rows, which moves values by ~1e-9 relative.
    a, b = divergences(resumed), divergences(whole)
    for key in ("js_matrix", "kl_matrix"):
        np.testing.assert_allclose(np.array(a[key]), np.array(b[key]), rtol=1e-6, atol=1e-12, err_msg=key)
    pq = [r.output_for_node("divergence_matrices", "divergence_per_pair_question") for r in (resumed, whole)]
    np.testing.assert_allclose(pq[0]["js_sym"].to_numpy(), pq[1]["js_sym"].to_numpy(), rtol=1e-6)
