"""Through the graph: new weights saved in place are re-generated and re-scored (the old cache entries
stay for the old weights), and a model directory whose index names a missing shard fails the run
once, in its first step, before any weights load."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import numpy as np

from tests.run_results import metadata, started_steps
from tests.test_graph import materialize, run_config
from persona_assets.ui_metadata import NOTHING_EVALUATED

CI_PERSONAS = ["software_engineer", "kindergarten_teacher", "villain", "assistant"]  # configs/ci.yaml


def _ci_like(tmp_path: Path) -> dg.RunConfig:
    """configs/ci.yaml's personas and questions, shorter responses and resampling (seconds on CPU)."""
    return run_config(tmp_path, eval_set={"config": {"personas": CI_PERSONAS, "n_questions": 2}})


def _cache_files(tmp_path: Path, kind: str) -> set[Path]:
    return set((tmp_path / "data" / "cache" / kind).rglob("*.json"))


def _other_weights(model_dir: Path, seed: int) -> Path:
    """The same architecture and config with other random weights, saved elsewhere (a fine-tune's output)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir))
    target = model_dir.parent / f"other-{seed}"
    model.save_pretrained(target)
    return target / "model.safetensors"


def test_weights_rewritten_in_place_are_regenerated_and_rescored(tiny_model_dir, tmp_path):
    model_dir = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    first = materialize(model_dir, _ci_like(tmp_path))
    assert first.success
    assert metadata(first, "generations")["newly_generated"] == 8
    old_generations, old_divergences = _cache_files(tmp_path, "generations"), _cache_files(tmp_path, "divergences")
    assert len(old_generations) == 8 and len(old_divergences) == 8

    replacement = _other_weights(model_dir, seed=1)
    config_before = (model_dir / "config.json").read_bytes()
    shutil.copyfile(replacement, model_dir / "model.safetensors")  # same name, same config, other weights
    assert (model_dir / "config.json").read_bytes() == config_before
    assert sorted(p.name for p in model_dir.glob("*.safetensors")) == ["model.safetensors"]  # same file count

    second = materialize(model_dir, _ci_like(tmp_path))
    assert second.success
    # Every response generated again and every one scored again: nothing came from the old weights' entries.
    assert metadata(second, "generations")["newly_generated"] == 8
    scored = metadata(second, "divergence_matrices")
    assert scored["responses_scored_now"] == 8 and scored["responses_complete_in_cache"] == 0
    assert scored["pairs_from_cache"] == 0
    old_model = first.output_for_node("generations")["model"]["model_fingerprint"]
    new_model = second.output_for_node("generations")["model"]["model_fingerprint"]
    assert new_model != old_model
    js_old = np.array(first.output_for_node("divergence_matrices", "divergence_matrices")["js_matrix"])
    js_new = np.array(second.output_for_node("divergence_matrices", "divergence_matrices")["js_matrix"])
    assert not np.array_equal(js_old, js_new)
    # The old weights' entries stay on disk, next to the new ones.
    assert old_generations < _cache_files(tmp_path, "generations")
    assert old_divergences < _cache_files(tmp_path, "divergences")
    assert len(_cache_files(tmp_path, "generations")) == 16 and len(_cache_files(tmp_path, "divergences")) == 16

    # Nothing changed since: the third run finds everything in the cache (the identity is stable).
    third = materialize(model_dir, _ci_like(tmp_path))
    assert third.success and metadata(third, "generations")["newly_generated"] == 0
    assert metadata(third, "divergence_matrices")["responses_complete_in_cache"] == 8


def test_a_missing_shard_fails_the_first_step_once_before_any_weights_load(tiny_model_dir, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from resources import model_loading

    model_dir = tmp_path / "sharded"
    AutoModelForCausalLM.from_pretrained(tiny_model_dir).save_pretrained(model_dir, max_shard_size="4MB")
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(model_dir)
    shards = sorted(model_dir.glob("model-*.safetensors"))
    assert len(shards) >= 2
    shards[-1].unlink()
    loads = []
    real_load = model_loading.load_model_and_tokenizer
    monkeypatch.setattr(
        model_loading, "load_model_and_tokenizer", lambda *a, **k: loads.append(a) or real_load(*a, **k)
    )

    result = materialize(model_dir, _ci_like(tmp_path))
    assert not result.success
    failures = {e.step_key: e.step_failure_data.error for e in result.get_step_failure_events()}
    assert set(failures) == {"eval_set"}  # once per run: no model step started
    error = failures["eval_set"]
    assert error.cls_name == "Failure"  # the message alone, no traceback of transformers
    # One line, then the run's note that nothing was evaluated (Dagster ends the message with a newline).
    assert error.message.strip().endswith("\n" + NOTHING_EVALUATED)
    assert error.message.strip()[: -len(NOTHING_EVALUATED)].strip().count("\n") == 0
    assert (
        f"model '{model_dir}': model.safetensors.index.json names {len(shards)} shard file(s), 1 missing"
        in error.message
    )
    assert shards[-1].name in error.message
    assert loads == []
    assert not started_steps(result) & {"generations", "persona_cosine", "divergence_matrices"}
