"""Run configuration: one dg.Config per asset that needs settings, every field with a concrete default.

Scenario files under configs/ set these per run (demo, ci, full 12×20, legacy re-analysis).

Unknown keys and the choices of a setting (`Literal` fields become Dagster enums) are part of
Dagster's config schema: the Launchpad refuses a wrong one as you type, the CLI at launch. Ranges
are pydantic constraints (stated in each description), which Dagster's schema cannot express: a
scenario job refuses a value outside them when the run is launched (persona_assets/jobs.py); any
other run fails its first step with the field named, before any model loads
(persona_assets/run_config_validation.py).
"""

from __future__ import annotations

from typing import Literal

import dagster as dg
from pydantic import Field, field_validator

from persona_assets.constants import DEFAULT_N_PERMUTATIONS
from persona_assets.environment import default_gpu_shards

from persona_assets.constants import LN2  # the largest JS divergence in nats


class EvalSetConfig(dg.Config):
    personas_file: str = Field("data/personas.yaml", description="YAML list of {name, prompt}")
    questions_file: str = Field("data/questions.yaml", description="YAML list of questions")
    personas: list[str] = Field(default_factory=list, description="subset of persona names; empty = all")
    n_questions: int = Field(4, ge=1, description="use the first n questions of the file (≥ 1)")


class GenerationConfig(dg.Config):
    max_new_tokens: int = Field(48, ge=1, description="greedy response length limit (≥ 1)")
    batch_size: int = Field(16, ge=1, description="prompts per generate() batch (≥ 1)")


class CosineConfig(dg.Config):
    layers: list[int] = Field(
        default_factory=list,
        description=(
            "decoder layers (1-based; 0 = embeddings; each in 0..the model's number of hidden layers); "
            "empty = four spread like 10/15/20/25 of 28"
        ),
    )
    batch_size: int = Field(16, ge=1, description="prompts per forward (≥ 1)")

    @field_validator("layers")
    @classmethod
    def _layers_not_negative(cls, layers: list[int]) -> list[int]:
        negative = [layer for layer in layers if layer < 0]
        if negative:
            raise ValueError(f"layer indices must be ≥ 0 (0 = embeddings), got {negative}")
        return layers


class DivergenceConfig(dg.Config):
    # Literal: Dagster's config schema offers the choices, so the Launchpad refuses any other value as you type.
    averaging: Literal["pair_own", "all_responses"] = Field(
        "pair_own", description="pair_own (method) or all_responses (earlier results)"
    )
    pair_chunk_size: int = Field(4, ge=1, description="persona pairs per divergence chunk (bounds memory; ≥ 1)")
    max_scorers_per_pass: int = Field(
        12,
        ge=2,  # a pass needs the generator and at least one other persona
        description=(
            "scoring sequences teacher-forced together for one response (bounds memory at any number of personas; ≥ 2)"
        ),
    )
    responses_per_batch: int = Field(
        16,
        ge=1,
        description="responses scored per call and then written to the cache (a killed run loses at most these; ≥ 1)",
    )
    shards: int = Field(
        default_gpu_shards(),  # PERSONA_GPU_SHARDS, read in persona_assets.environment
        ge=1,
        description=(
            "teacher-forcing shards: steps that each score a share of the responses, side by side (one per GPU) "
            "under the multiprocess executor; default PERSONA_GPU_SHARDS or 1; ≥ 1"
        ),
    )
    noise_floor_samples: int = Field(
        2,
        ge=0,
        description=(
            "responses re-scored alone and in other batch compositions to measure the noise floor of JS/KL "
            "(every run, cached or not); 0 = off; ≥ 0"
        ),
    )

    scoring_rule: Literal["generated", "original_template"] = Field(
        "generated",
        description=(
            "which positions are scored: generated (what the model generated, the end-of-turn token when emitted) "
            "or original_template (the earlier study's rule: the response decoded, re-rendered through the chat "
            "template and re-tokenised; the template's closing tokens scored after every response)"
        ),
    )


class PersonaBaselineConfig(dg.Config):
    max_paraphrases: int = Field(
        8,
        ge=0,
        description=(
            "paraphrases per persona teacher-forced for the within-persona baseline (the first n of each persona's "
            "`paraphrases:` in the personas file); 0 = no baseline measured; ≥ 0"
        ),
    )
    max_scorers_per_pass: int = Field(
        12, ge=2, description="scoring sequences teacher-forced together for one response (bounds memory; ≥ 2)"
    )
    responses_per_batch: int = Field(
        16, ge=1, description="responses scored per call and then written to the cache (≥ 1)"
    )
    n_bootstrap: int = Field(2000, ge=1, description="question-bootstrap resamples for the CIs and the calls (≥ 1)")
    seed: int = Field(0, ge=0, description="question-bootstrap random seed (≥ 0)")


class LeakageConfig(dg.Config):
    leakage_path: str = Field(
        "",
        description="directed leakage rates: CSV/JSON of source,target,rate or a marker_eval folder; empty = none",
    )


class AnalysisConfig(dg.Config):
    n_bootstrap: int = Field(
        2000,
        ge=1,
        description="bootstrap resamples for 95% CIs: pairs, clusters, crossed sources × targets, questions (≥ 1)",
    )
    n_permutations: int = Field(
        DEFAULT_N_PERMUTATIONS,
        ge=1,
        description=(
            "persona-label permutations per Mantel / leakage permutation test (≥ 1; all of them, exactly, when there "
            "are fewer)"
        ),
    )
    seed: int = Field(0, ge=0, description="bootstrap and permutation random seed (≥ 0)")


class PrecheckConfig(AnalysisConfig):
    cosine_leakage_file: str = Field(
        "", description="an existing cosine-vs-leakage JSON (cosine_leakage_correlation.json format); empty = none"
    )


class KillGateConfig(dg.Config):
    min_js_std: float = Field(
        0.05, ge=0.0, le=LN2, description="discrimination: minimum std of pair JS (nats; in [0, ln 2])"
    )
    min_js_ratio: float = Field(
        3.0, ge=1.0, description="discrimination: minimum max/min ratio of pair JS (≥ 1; 1 = ratio never kills)"
    )
    max_abs_js_cosine_rho: float = Field(
        0.80, ge=0.0, le=1.0, description="redundancy: maximum |Spearman ρ(JS, cosine)| (in [0, 1]; 1 = never kills)"
    )
    min_relative_question_spread: float = Field(
        0.5,
        ge=0.0,
        description=(
            "question informativeness: flag questions whose pair-JS std is below this × the median question's (≥ 0)"
        ),
    )


class LegacyConfig(dg.Config):
    legacy_dir: str = Field(
        "data/reference_study",
        description=(
            "folder of earlier results (divergence_matrices.json, cosine_leakage_correlation.json, "
            "cosine_<N>_l<L>.json, marker_eval/), relative to the working directory; "
            "default: the published study bundled with the repository"
        ),
    )


class ProfileConfig(AnalysisConfig):
    """Settings of the per-token pass (`layer_divergences`, `divergence_profiles`); the lens layers are the
    cosine layers (`ops.persona_cosine.config.layers`) and the model's last layer."""

    position_buckets: list[int] = Field(
        default_factory=lambda: [1, 5, 17, 65, 257],
        description="response-position bucket edges, 1-based, starting at 1 and increasing: 1–4, 5–16, …, 257+",
    )
    top_k: int = Field(10, ge=1, description="vocabulary items listed per pair and KL direction (≥ 1)")
    top_k_stored: int = Field(
        50, ge=1, description="vocabulary terms kept per response, pair and direction in the cache (≥ top_k)"
    )
    n_questions: int = Field(
        0, ge=0, description="teacher-force only the responses to the first n questions of the run; 0 = all (≥ 0)"
    )
    max_scorers_per_pass: int = Field(12, ge=2, description="scoring sequences per pass of one response (≥ 2)")
    responses_per_batch: int = Field(8, ge=1, description="responses per call, then written to the cache (≥ 1)")

    @field_validator("position_buckets")
    @classmethod
    def _edges(cls, edges: list[int]) -> list[int]:
        from persona_assets.measure.token_profiles import check_bucket_edges

        return check_bucket_edges(edges)
