"""One process per run: the definitions default to the in-process executor, and one model (and tokenizer) load
serves every model step of a run (generations, persona_cosine, the teacher forcing)."""

from __future__ import annotations

import resources.model_loading as model_loading
from persona_assets.environment import default_executor_mode
from tests.test_graph import materialize, run_config


def test_the_definitions_run_in_one_process_by_default():
    from persona_assets.definitions import defs

    executor = defs.resolve_implicit_global_asset_job_def().executor_def
    assert executor.name == "persona_executor"
    assert executor.config_schema.as_field().default_value == {"in_process": {}}
    assert default_executor_mode({}) == "in_process"


def test_one_model_load_serves_every_model_step_of_a_run(tiny_model_dir, tmp_path, monkeypatch):
    loads = []
    real = model_loading.load_model_and_tokenizer

    def counting(*args, **kwargs):
        loads.append(kwargs.get("device"))
        return real(*args, **kwargs)

    tokenizers = []
    real_tokenizer = model_loading.tokenizer_copy

    def counting_tokenizers(location, load):
        tokenizers.append(location)
        return real_tokenizer(location, load)

    monkeypatch.setattr(model_loading, "load_model_and_tokenizer", counting)
    monkeypatch.setattr(model_loading, "tokenizer_copy", counting_tokenizers)
    result = materialize(tiny_model_dir, run_config(tmp_path))
    assert result.success
    steps = {e.step_key for e in result.get_step_success_events()}
    assert {"generations", "persona_cosine", "divergence_matrices.score_divergence_shard[shard_0]"} <= steps
    assert loads == ["cpu"]
    # The tokenizer is loaded and checked once: the prompts' check loads it, the weights' load reuses it.
    assert tokenizers == [str(tiny_model_dir)]
