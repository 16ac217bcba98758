"""Run configuration: one dg.Config per asset that needs settings, every field with a concrete default.

Scenario files under configs/ set these per run (demo, ci, full 12×20, legacy re-analysis).
"""

from __future__ import annotations

import dagster as dg
from pydantic import Field


class EvalSetConfig(dg.Config):
    personas_file: str = Field("data/personas.yaml", description="YAML list of {name, prompt}")
    questions_file: str = Field("data/questions.yaml", description="YAML list of questions")
    personas: list[str] = Field(default_factory=list, description="subset of persona names; empty = all")
    n_questions: int = Field(4, description="use the first n questions of the file")


class GenerationConfig(dg.Config):
    max_new_tokens: int = Field(48, description="greedy response length limit")
    batch_size: int = Field(16, description="prompts per generate() batch")


class CosineConfig(dg.Config):
    layers: list[int] = Field(
        default_factory=list,
        description="decoder layers (1-based; 0 = embeddings); empty = four spread like 10/15/20/25 of 28",
    )
    batch_size: int = Field(16)


class DivergenceConfig(dg.Config):
    averaging: str = Field("pair_own", description="pair_own (method) or all_responses (earlier results)")
    pair_chunk_size: int = Field(4, description="persona pairs per divergence chunk (bounds memory)")
    max_scorers_per_pass: int = Field(
        12,
        description="scoring sequences teacher-forced together for one response (bounds memory at any number of personas)",
    )
    responses_per_batch: int = Field(
        16, description="responses scored per call and then written to the cache (a killed run loses at most these)"
    )
    noise_floor_samples: int = Field(
        2,
        ge=0,
        description=(
            "responses re-scored alone and in other batch compositions to measure the noise floor of JS/KL "
            "(every run, cached or not); 0 = off; ≥ 0"
        ),
    )


class LeakageConfig(dg.Config):
    leakage_path: str = Field(
        "",
        description="directed leakage rates: CSV/JSON of source,target,rate or a marker_eval folder; empty = none",
    )


class AnalysisConfig(dg.Config):
    n_bootstrap: int = Field(2000, description="bootstrap resamples for 95% CIs")
    seed: int = Field(0)


class PrecheckConfig(AnalysisConfig):
    cosine_leakage_file: str = Field(
        "", description="an existing cosine-vs-leakage JSON (cosine_leakage_correlation.json format); empty = none"
    )


class KillGateConfig(dg.Config):
    min_js_std: float = Field(0.05, description="discrimination: minimum std of pair JS (nats)")
    min_js_ratio: float = Field(3.0, description="discrimination: minimum max/min ratio of pair JS")
    max_abs_js_cosine_rho: float = Field(0.80, description="redundancy: maximum |Spearman ρ(JS, cosine)|")
    min_relative_question_spread: float = Field(
        0.5, description="question informativeness: flag questions whose pair-JS std is below this × the median question's"
    )


class LegacyConfig(dg.Config):
    legacy_dir: str = Field(
        "legacy",
        description=(
            "folder of earlier results laid out like ../shared/reference (divergence_matrices.json, "
            "cosine_leakage_correlation.json, cosine_<N>_l<L>.json, marker_eval/); relative to the working directory"
        ),
    )
