"""A model that cannot serve the experiment fails on its tokenizer and config, naming the model and the fix.

The broken models are copies of the tiny model with one thing changed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from persona_assets.runs.errors import InputError
from resources.llm import CpuLLM
from resources.model_loading import load_model_and_tokenizer, load_tokenizer, resolve_model_source

# Renders only user and assistant turns: every persona would become the same prompt.
TEMPLATE_WITHOUT_SYSTEM = (
    "{% for message in messages %}{% if message['role'] != 'system' %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
TEMPLATE_REJECTING_SYSTEM = (
    "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}{{ message['content'] }}{% endfor %}"
)


@pytest.fixture
def model_copy(tiny_model_dir, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))


def _set_chat_template(directory: Path, template: str | None) -> None:
    """Where transformers 5 keeps it (chat_template.jinja), and the older tokenizer_config key."""
    jinja = directory / "chat_template.jinja"
    config_path = directory / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config.pop("chat_template", None)
    if template is None:
        jinja.unlink(missing_ok=True)
    else:
        jinja.write_text(template)
    config_path.write_text(json.dumps(config))


def _set_vocab_size(directory: Path, vocab_size: int) -> None:
    config = json.loads((directory / "config.json").read_text())
    config["vocab_size"] = vocab_size
    (directory / "config.json").write_text(json.dumps(config))


def _tokenizer_error(directory: Path) -> str:
    with pytest.raises(InputError) as raised:
        load_tokenizer(resolve_model_source(str(directory)))
    return str(raised.value)


def test_missing_path_is_named(tmp_path):
    missing = tmp_path / "no-such-model"
    for model in (str(missing), "models/no/such-model"):  # absolute, and relative with more than one slash
        with pytest.raises(InputError, match="path does not exist") as raised:
            resolve_model_source(model)
        assert repr(model) in str(raised.value) and "give an existing model directory" in str(raised.value)


def test_a_file_is_not_a_model_directory(tmp_path):
    file = tmp_path / "notes.txt"
    file.write_text("not a model")
    with pytest.raises(InputError, match="not a directory"):
        resolve_model_source(str(file))


def test_a_directory_without_config_is_not_a_model(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no config.json, so it is not a model"):
        resolve_model_source(str(tmp_path / "empty"))


def test_a_directory_without_weights_is_named(model_copy):
    (model_copy / "model.safetensors").unlink()
    with pytest.raises(InputError, match=r"no weight files \(\*.safetensors or \*.bin\)"):
        resolve_model_source(str(model_copy))


def test_model_without_tokenizer_files_is_named(model_copy):
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        (model_copy / name).unlink(missing_ok=True)
    message = _tokenizer_error(model_copy)
    assert str(model_copy) in message and "tokenizer" in message


def test_model_without_chat_template_is_named(model_copy):
    _set_chat_template(model_copy, None)
    message = _tokenizer_error(model_copy)
    assert str(model_copy) in message and "has no chat template" in message and "chat model" in message


def test_chat_template_that_ignores_the_system_prompt_is_detected(model_copy):
    _set_chat_template(model_copy, TEMPLATE_WITHOUT_SYSTEM)
    message = _tokenizer_error(model_copy)
    assert str(model_copy) in message and "ignores the system prompt" in message


def test_chat_template_that_rejects_the_system_role_is_named(model_copy):
    _set_chat_template(model_copy, TEMPLATE_REJECTING_SYSTEM)
    message = _tokenizer_error(model_copy)
    assert "System role not supported" in message and "supports the system role" in message


def test_tokenizer_larger_than_the_model_vocabulary_is_detected_before_the_weights(model_copy):
    tokenizer_size = len(load_tokenizer(resolve_model_source(str(model_copy))))
    _set_vocab_size(model_copy, tokenizer_size - 10)
    message = _tokenizer_error(model_copy)
    assert f"{tokenizer_size} tokens" in message and f"vocab_size is {tokenizer_size - 10}" in message
    # The full load fails on the same check, before the weights (whose shapes no longer match).
    with pytest.raises(InputError, match="index past the embedding"):
        load_model_and_tokenizer(resolve_model_source(str(model_copy)), device="cpu", dtype="float32")


def test_tokenizer_smaller_than_a_padded_vocabulary_is_accepted(embedded_tokenizer_dir, tmp_path):
    """Like Qwen: the embedding is padded past the tokenizer's last id."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(embedded_tokenizer_dir)
    padded = ((len(tokenizer) + 127) // 128) * 128 + 128
    config = LlamaConfig(
        vocab_size=padded,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    directory = tmp_path / "padded"
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)

    llm = CpuLLM(model=str(directory))
    prompt = llm.chat_prompt_ids("You are a pirate.", "Hello?")
    generated = llm.generate([prompt], max_new_tokens=2, batch_size=1)
    assert len(generated[0].token_ids) >= 1


def test_the_resource_fails_on_the_tokenizer_before_loading_weights(model_copy):
    _set_chat_template(model_copy, TEMPLATE_WITHOUT_SYSTEM)
    llm = CpuLLM(model=str(model_copy))
    with pytest.raises(InputError, match="ignores the system prompt"):
        llm.chat_prompt_ids("You are a pirate.", "Hello?")
    assert llm._engine is None
