"""The divergence measurement: what is scored, how, how precisely, and where the results are kept.

Modules, in dependency order (what a newcomer changes here: the math, the scoring rule, the cache):
- `divergence`: JS/KL between next-token distributions (float64 reference, batched torch path);
- `cosine`: hidden-state cosine between personas (the baseline);
- `aggregate`: per-response values -> per-pair values and N x N matrices;
- `scoring_rule`, `scoring_faults`: which positions are scored; what can go wrong while scoring;
- `noise_floor`, `precision`, `method_record`: how much the numbers move, and the record of how they were made;
- `cache_keys`, `scoring_plan`, `divergence_store`: the resumable store: keys, planning, scoring;
- `response_jobs`: which teacher forcing each response needs.

Names are imported lazily (torch loads only with `divergence`): `from persona_assets.measure import pair_matrices`.
No dagster import.
A function named like its module is imported from the module itself (the package attribute is the module).
"""

from persona_assets.lazy_exports import lazy_getattr

_EXPORTS = {
    # divergence
    "LN2": "divergence",
    "TokenDivergences": "divergence",
    "DivergenceWorkspace": "divergence",
    "pair_divergences": "divergence",
    "token_divergences": "divergence",
    "reference_divergences": "divergence",
    # cosine
    "CENTRING_RUN_MEAN": "cosine",
    "centred_cosine": "cosine",
    "default_layers": "cosine",
    # aggregate
    "AVERAGING_MODES": "aggregate",
    "pair_matrices": "aggregate",
    "pair_question_table": "aggregate",
    "per_response_table": "aggregate",
    # scoring_rule
    "GENERATED": "scoring_rule",
    "ORIGINAL_TEMPLATE": "scoring_rule",
    "SCORING_RULES": "scoring_rule",
    "scored_response": "scoring_rule",
    # scoring_faults
    "NonFiniteLogitsError": "scoring_faults",
    "TeacherForcingError": "scoring_faults",
    "is_out_of_memory": "scoring_faults",
    # noise_floor
    "noise_floor_summary": "noise_floor",
    "difference_stats": "noise_floor",
    "floor_nats": "noise_floor",
    "floor_evidence": "noise_floor",
    "not_measured": "noise_floor",
    # precision
    "scoring_precision": "precision",
    "generation_precision": "precision",
    "scoring_precision_nats": "precision",
    # method_record
    "scoring_path": "method_record",
    # cache_keys
    "DIVERGENCE_CODE_VERSION": "cache_keys",
    "response_key": "cache_keys",
    "pair_key": "cache_keys",
    # scoring_plan
    "ResponseJob": "scoring_plan",
    "scoring_passes": "scoring_plan",
    "batch_end": "scoring_plan",
    "shard_of": "scoring_plan",
    # divergence_store
    "DivergenceCache": "divergence_store",
    "ScoreStats": "divergence_store",
    "score_missing": "divergence_store",
    "cached_rows": "divergence_store",
}
__all__ = list(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
