"""Both scoring rules on a length-limited response of a tiny real-architecture model with the
embedded tokenizer's real chat template: they agree on every generated position and differ only by
the template's closing tokens, which the original rule adds."""

from __future__ import annotations

import pytest
import torch

from persona_assets.measure.divergence import pair_divergences
from persona_assets.measure.scoring_rule import ORIGINAL_TEMPLATE, scored_response, template_closing_ids
from resources.hf_engine import HFEngine, chat_prompt_ids

SYSTEMS = ["You are a pirate.", "You are a careful medical doctor who explains things slowly."]
QUESTION = "What is the moon made of?"


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    return HFEngine.load(str(tiny_model_dir))


def _closing_ids(tokenizer) -> list[int]:
    content = "Rock and dust."
    messages = [{"role": "system", "content": SYSTEMS[0]}, {"role": "user", "content": QUESTION}]
    rendered = tokenizer.apply_chat_template([*messages, {"role": "assistant", "content": content}], tokenize=True)
    rendered = rendered["input_ids"] if hasattr(rendered, "keys") else rendered
    return template_closing_ids(
        rendered, chat_prompt_ids(tokenizer, SYSTEMS[0], QUESTION), tokenizer.encode(content, add_special_tokens=False)
    )


def test_rules_agree_on_generated_positions_and_differ_by_the_closing_tokens(engine):
    closing = _closing_ids(engine.tokenizer)
    assert (
        engine.tokenizer.convert_ids_to_tokens(closing[0]) == "<|im_end|>"
        and engine.tokenizer.decode(closing[1:]) == "\n"
    )
    prompts = [engine.chat_prompt_ids(s, QUESTION) for s in SYSTEMS]
    generated = engine.generate([prompts[0]], max_new_tokens=8)[0].token_ids
    if generated[-1] == closing[0]:
        pytest.skip("the tiny model stopped by itself; the test needs a length-limited response")
    ours = scored_response(generated, hit_max_new_tokens=True, closing_ids=closing)
    original = scored_response(generated, hit_max_new_tokens=True, closing_ids=closing, rule=ORIGINAL_TEMPLATE)
    js_ours = pair_divergences(engine.response_logprobs(prompts, ours.ids), [(0, 1)]).js[0]
    js_original = pair_divergences(engine.response_logprobs(prompts, original.ids), [(0, 1)]).js[0]
    assert js_original.shape[0] == js_ours.shape[0] + 2
    # A causal model: appending positions changes nothing before them (float32 batch noise only).
    torch.testing.assert_close(js_original[: len(generated)], js_ours, atol=1e-5, rtol=1e-4)
    # The response means differ by exactly the two appended positions.
    assert float(js_original.mean()) != pytest.approx(float(js_ours.mean()), rel=1e-3)
    expected = (float(js_ours.sum()) + float(js_original[len(generated) :].sum())) / len(original.ids)
    assert float(js_original.mean()) == pytest.approx(expected, rel=1e-5)
