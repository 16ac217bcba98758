"""Tokenizers are loaded once per directory and process, and each caller gets a copy of its own."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from transformers import AutoTokenizer

from resources.tokenizer_cache import tokenizer_copy

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


@pytest.fixture
def tokenizer_dir(tmp_path, embedded_tokenizer_dir):
    directory = tmp_path / "tokenizer"
    directory.mkdir()
    for name in TOKENIZER_FILES:
        if (embedded_tokenizer_dir / name).exists():
            shutil.copy2(embedded_tokenizer_dir / name, directory / name)
    return directory


class CountingLoader:
    def __init__(self):
        self.calls = 0

    def __call__(self, location):
        self.calls += 1
        return AutoTokenizer.from_pretrained(location)


def test_a_directory_is_loaded_once_and_each_caller_gets_its_own_equal_copy(tokenizer_dir):
    load = CountingLoader()
    first = tokenizer_copy(str(tokenizer_dir), load)
    second = tokenizer_copy(str(tokenizer_dir), load)
    assert load.calls == 1 and first is not second
    text = "<|im_start|>system\nYou are a villain.<|im_end|>"
    assert (
        first(text)["input_ids"]
        == second(text)["input_ids"]
        == AutoTokenizer.from_pretrained(tokenizer_dir)(text)["input_ids"]
    )
    assert first.chat_template == second.chat_template
    first.padding_side = "left" if second.padding_side == "right" else "right"
    third = tokenizer_copy(str(tokenizer_dir), load)
    assert third.padding_side == second.padding_side != first.padding_side  # a copy's change stays in that copy
    assert load.calls == 1


def test_a_file_rewritten_in_place_is_loaded_afresh(tokenizer_dir):
    load = CountingLoader()
    before = tokenizer_copy(str(tokenizer_dir), load)
    config = tokenizer_dir / "tokenizer_config.json"
    settings = json.loads(config.read_text())
    settings["model_max_length"] = 1234
    config.write_text(json.dumps(settings))
    stat = config.stat()
    os.utime(config, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # a coarse clock still sees a change
    after = tokenizer_copy(str(tokenizer_dir), load)
    assert load.calls == 2
    assert before.model_max_length != 1234 and after.model_max_length == 1234


def test_what_is_not_a_directory_is_loaded_every_time(tmp_path):
    calls = []
    for _ in range(2):
        tokenizer_copy(str(tmp_path / "no-such-directory"), lambda location: calls.append(location) or object())
    assert len(calls) == 2
