"""Planning the teacher forcing: which responses (`ResponseJob`), in which passes, batches and shards.

Depends only on the responses and settings, never on the cache, so shards running at the same time
agree on who does what. No dagster import.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from persona_assets.measure.cache_keys import pair_key


@dataclass
class ResponseJob:
    """One response to score: its cache key, token ids, the scorers' prompts and the pairs it needs.

    `names`, `generator` and `question_index` only serve error messages (persona index → name).
    """

    key: str
    response_ids: list[int]
    prompts: dict[int, list[int]]  # persona index → prompt ids (system + this question)
    pairs: list[tuple[int, int]]  # (a, b) persona indices
    pair_keys: list[str] = field(default_factory=list)
    names: dict[int, str] = field(default_factory=dict)
    generator: int = -1
    question_index: int = -1
    # original_template rule only: whether the re-tokenised ids are the generated ones (scoring_rule).
    round_trips: bool | None = None

    def __post_init__(self) -> None:
        if not self.pair_keys:
            self.pair_keys = [pair_key(self.prompts[a], self.prompts[b]) for a, b in self.pairs]

    def persona(self, index: int) -> str:
        return repr(self.names.get(index, f"#{index}"))

    def describe(self) -> str:
        """E.g. "the response of 'villain' to question 2 (cache key 3fa9c2d1e0b4)"."""
        return (
            f"the response of {self.persona(self.generator)} to question {self.question_index} "
            f"(cache key {self.key[:12]})"
        )


def scoring_passes(
    pairs: Sequence[tuple[int, int]], max_scorers: int
) -> list[tuple[list[int], list[tuple[int, int]], list[int]]]:
    """Split pairs into passes that each teacher-force at most `max_scorers` sequences.

    Returns (scorer persona indices, pairs as local indices into them, positions in `pairs`) per
    pass. Greedy in the given order: for pair-own pairs (g, o1), (g, o2), … every pass is g plus up
    to max_scorers − 1 others. Deterministic: the same pairs always give the same passes.
    """
    if max_scorers < 2:
        raise ValueError(f"max_scorers_per_pass must be ≥ 2 (a pair needs two scorers), got {max_scorers}")
    passes: list[tuple[list[int], list[tuple[int, int]], list[int]]] = []
    scorers: list[int] = []
    members: list[int] = []
    for position, (a, b) in enumerate(pairs):
        needed = [s for s in dict.fromkeys((a, b)) if s not in scorers]
        if members and len(scorers) + len(needed) > max_scorers:
            passes.append(_finish_pass(scorers, pairs, members))
            scorers, members = [], []
            needed = list(dict.fromkeys((a, b)))
        scorers.extend(needed)
        members.append(position)
    if members:
        passes.append(_finish_pass(scorers, pairs, members))
    return passes


def _finish_pass(scorers: list[int], pairs: Sequence[tuple[int, int]], members: list[int]):
    local = {s: k for k, s in enumerate(scorers)}
    return list(scorers), [(local[pairs[m][0]], local[pairs[m][1]]) for m in members], list(members)


def batch_end(groups: Sequence[Any], start: int, size: int, whole_groups: bool) -> int:
    """Where the batch of at most `size` jobs that starts at `start` ends (`groups`: each job's prompt group).

    With `whole_groups` (the resource shares prefixes: each call computes its prompts' K/V once) a
    batch that would split a group over two calls ends before that group instead, so no prompt is
    computed twice; a group larger than `size` is split as before. On configs/demo.yaml (12 responses
    per question, 16 per batch) that is 48 prompt forwards instead of 72.
    """
    end = min(start + size, len(groups))
    if not whole_groups or end == len(groups) or groups[end] != groups[end - 1]:
        return end
    cut = end - 1
    while cut > start and groups[cut - 1] == groups[cut]:
        cut -= 1
    return cut if cut > start else end


def shard_of(jobs: Sequence[ResponseJob], lengths: Sequence[int], shard: int, n_shards: int) -> list[ResponseJob]:
    """The jobs of shard `shard` of `n_shards`: round-robin over jobs sorted by response length.

    Depends only on the responses, never on the cache, so shards running at the same time agree
    on who does what; the length order balances the shards' token counts.
    """
    if not 0 <= shard < n_shards:
        raise ValueError(f"shard {shard} outside 0..{n_shards - 1}")
    order = sorted(range(len(jobs)), key=lambda i: (lengths[i], jobs[i].key))
    return [jobs[i] for i in order[shard::n_shards]]
