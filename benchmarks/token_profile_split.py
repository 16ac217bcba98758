"""Where the per-token pass spends its time on the CPU: 2 responses x 12 scorers x 48 tokens on the embedded
model, lens at layers 11/16/21/27 + 30, shared prefixes; inclusive wall seconds of its phases, then the
divergence step's scoring (prefix pool + response_logits + float64 pair_divergences) of the same responses.

    PYTHONPATH=. .venv/bin/python benchmarks/token_profile_split.py
"""

import time

import resources.token_profile as tp
from persona_assets.measure.divergence import pair_divergences
from resources.hf_engine import HFEngine

PERSONAS = ["pirate", "judge", "chef", "poet", "villain", "nurse", "teacher", "coder", "clown", "monk", "spy", "cook"]
PHASES = ("lm_head_logits", "_divergences", "vocabulary_terms", "continuation_hidden_states", "prefix_pool")


def main() -> None:
    engine = HFEngine.load("embedded")
    question = "What is the best way to learn a language quickly?"
    prompts = [engine.chat_prompt_ids(f"You are a {p}.", question) for p in PERSONAS]
    response = list(range(1000, 1048))
    items = [(prompts, response, [(0, k) for k in range(1, len(prompts))])] * 2
    seconds: dict[str, float] = {}

    def wrap(name: str) -> None:
        original = getattr(tp, name)

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - started

        setattr(tp, name, timed)

    for name in PHASES:
        wrap(name)
    started = time.perf_counter()
    tp.token_profile_pass(engine, items, [11, 16, 21, 27], shared_prefixes=True)
    print("pass", round(time.perf_counter() - started, 2), {k: round(v, 2) for k, v in seconds.items()})
    started = time.perf_counter()
    pool = engine.prefix_pool(prompts)
    for _, ids, pairs in items:
        pair_divergences(engine.response_logits(prompts, ids, prefixes=pool), pairs, chunk_size=4)
    print("divergence step's scoring", round(time.perf_counter() - started, 2))


if __name__ == "__main__":
    main()
