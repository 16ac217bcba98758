"""Readers of other people's file formats: the result files of the earlier persona-similarity study
(Qwen2.5-7B-Instruct).

Three JSON formats, each loaded into a typed dataclass after strict validation (shape, persona
names, ranges, symmetry, finiteness); any problem raises `InputError` naming the file and what is
wrong, because a silently mis-read matrix would corrupt every downstream correlation.

- ``cosine_leakage_correlation.json`` -> `CosineLeakageFile`: per-layer cosine-vs-leakage
  summaries and the per-pair detail (cosine, leakage, category).
- ``cosine_11_l20.json``-like files -> `CosineMatrix`: an N x N cosine matrix at one layer.
- ``divergence_matrices.json`` -> `LegacyDivergences`: teacher-forced JS / KL matrices and the
  per-response JS values, from which both pair averagings can be recomputed.

Cosines depend on which persona mean they were centred by, and the two cosine formats differ in
this, so each dataclass records its centring in words.
"""

from persona_assets.inputs.formats.cosine_leakage import CosineLeakageFile, load_cosine_leakage_file
from persona_assets.inputs.formats.cosine_matrix import CosineMatrix, load_cosine_matrix_file
from persona_assets.inputs.formats.divergences import (
    LegacyDivergences,
    all_responses_js_from_per_prompt,
    load_divergence_matrices_file,
    pair_own_js_from_per_prompt,
)
from persona_assets.inputs.formats.validation import ALL_RESPONSES, LN2, PAIR_OWN, PAIR_SEPARATOR

__all__ = [
    "ALL_RESPONSES",
    "LN2",
    "PAIR_OWN",
    "PAIR_SEPARATOR",
    "CosineLeakageFile",
    "CosineMatrix",
    "LegacyDivergences",
    "all_responses_js_from_per_prompt",
    "load_cosine_leakage_file",
    "load_cosine_matrix_file",
    "load_divergence_matrices_file",
    "pair_own_js_from_per_prompt",
]
