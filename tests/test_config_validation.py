"""Bad run config fails with the op and field named, before any model step, and loses nothing computed."""

import math
import os
import typing
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from pydantic import Field

from persona_assets.assets.eval_set import eval_set
from persona_assets.runs.errors import InputError
from persona_assets.definitions import defs
from persona_assets.run_config_validation import config_classes, run_config_problems, validate_run_config
from resources.llm import CpuLLM
from tests.conftest import REPO
from tests.run_results import started_steps
from tests.test_graph import PERSONAS, materialize, run_config

LN2 = math.log(2)
JOB = defs.resolve_implicit_global_asset_job_def()


def _ops(op: str, **config) -> dict:
    return {"ops": {op: {"config": config}}}


def _step_failures(result) -> dict[str, str]:
    return {
        event.step_key: event.event_specific_data.error.to_string()
        for event in result.all_events
        if event.event_type == dg.DagsterEventType.STEP_FAILURE
    }


# ------------------------------------------------------------------ unknown keys (Dagster, at launch)
def test_unknown_key_is_rejected_at_launch_naming_it():
    with pytest.raises(dg.DagsterInvalidConfigError) as raised:
        dg.materialize([eval_set], resources={"llm": CpuLLM()}, run_config=_ops("eval_set", n_question=2))  # typo
    assert "n_question" in str(raised.value) and "eval_set" in str(raised.value)


def test_unknown_key_fails_the_cli_naming_it(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    bad = tmp_path / "typo.yaml"
    bad.write_text("ops:\n  eval_set:\n    config:\n      n_question: 2\n")
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "dagster",
            "asset",
            "materialize",
            "-m",
            "persona_assets.definitions",
            "--select",
            "eval_set",
            "-c",
            str(bad),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode != 0
    assert "n_question" in output and "eval_set" in output
    assert not (tmp_path / "data" / "outputs" / "eval_set.json").exists()


# ------------------------------------------------------------------ ranges (pydantic constraints)
OUT_OF_RANGE = [
    ("eval_set", "n_questions", 0),
    ("generations", "max_new_tokens", 0),
    ("generations", "batch_size", -1),
    ("persona_cosine", "batch_size", 0),
    ("persona_cosine", "layers", [2, -1]),
    ("divergence_matrices", "pair_chunk_size", 0),
    ("divergence_matrices", "max_scorers_per_pass", 1),
    ("divergence_matrices", "responses_per_batch", 0),
    ("divergence_matrices", "averaging", "median"),
    ("divergence_matrices", "shards", 0),
    ("leakage_correlations", "n_bootstrap", 0),
    ("leakage_correlations", "n_permutations", 0),
    ("cosine_precheck", "n_bootstrap", -1),
    ("cosine_precheck", "seed", -1),
    ("kill_gate_verdicts", "min_js_std", -0.01),
    ("kill_gate_verdicts", "min_js_std", LN2 + 0.01),
    ("kill_gate_verdicts", "min_js_ratio", 0.5),
    ("kill_gate_verdicts", "max_abs_js_cosine_rho", -0.1),
    ("kill_gate_verdicts", "max_abs_js_cosine_rho", 1.5),
    ("kill_gate_verdicts", "min_relative_question_spread", -0.5),
    ("legacy_kill_gate_verdicts", "min_js_ratio", 0.0),
    ("legacy_leakage_correlations", "n_bootstrap", 0),
]


@pytest.mark.parametrize(("op", "field", "value"), OUT_OF_RANGE)
def test_out_of_range_setting_is_named(op, field, value):
    problems = run_config_problems(_ops(op, **{field: value}), JOB)
    assert len(problems) == 1
    assert problems[0].startswith(f"ops.{op}.config.{field}: ")
    assert f"(got {value!r}) [" in problems[0] and problems[0].endswith(
        "]"
    )  # the value, then the field's allowed range


def test_an_unknown_averaging_names_the_allowed_modes():
    (problem,) = run_config_problems(_ops("divergence_matrices", averaging="median"), JOB)
    assert "'pair_own' or 'all_responses' (got 'median')" in problem


def test_the_choices_of_a_setting_are_the_ones_the_code_knows():
    from persona_assets.config import DivergenceConfig
    from persona_assets.constants import AVERAGING_MODES
    from persona_assets.measure.scoring_rule import SCORING_RULES

    fields = DivergenceConfig.model_fields
    assert typing.get_args(fields["averaging"].annotation) == tuple(AVERAGING_MODES)
    assert typing.get_args(fields["scoring_rule"].annotation) == tuple(SCORING_RULES)


def test_an_unknown_choice_is_refused_by_the_schema_before_a_run_exists(tiny_model_dir, tmp_path):
    """The schema lists the choices (an enum in the Launchpad): nothing runs, the allowed values are named."""
    with dg.instance_for_test() as instance:
        with pytest.raises(dg.DagsterInvalidConfigError) as raised:
            materialize(
                tiny_model_dir,
                run_config(tmp_path, divergence_matrices={"config": {"averaging": "median"}}),
                instance=instance,
            )
        assert not instance.get_runs()
    message = str(raised.value)
    assert "median" in message and "pair_own" in message and "all_responses" in message


@pytest.mark.parametrize(
    ("op", "field", "value"),
    [
        ("kill_gate_verdicts", "min_js_std", 0.0),
        ("kill_gate_verdicts", "min_js_std", LN2),
        ("kill_gate_verdicts", "min_js_ratio", 1.0),
        ("kill_gate_verdicts", "max_abs_js_cosine_rho", 0.0),
        ("kill_gate_verdicts", "max_abs_js_cosine_rho", 1.0),
        ("kill_gate_verdicts", "min_relative_question_spread", 0.0),
        ("divergence_matrices", "averaging", "all_responses"),
        ("divergence_matrices", "max_scorers_per_pass", 2),
        ("persona_cosine", "layers", [0, 1]),
    ],
)
def test_boundary_values_are_accepted(op, field, value):
    assert run_config_problems(_ops(op, **{field: value}), JOB) == []


def test_every_problem_is_listed_at_once():
    config = {
        "ops": {
            "generations": {"config": {"max_new_tokens": 0}},
            "kill_gate_verdicts": {"config": {"min_js_ratio": 0.1}},
        }
    }
    with pytest.raises(InputError) as raised:
        validate_run_config(config, JOB)
    message = str(raised.value)
    assert (
        "ops.generations.config.max_new_tokens" in message and "ops.kill_gate_verdicts.config.min_js_ratio" in message
    )
    assert "≥ 1" in message  # the field's description, with its range


def test_the_committed_scenario_configs_are_valid():
    import yaml

    for path in sorted((REPO / "configs").rglob("*.yaml")):
        config = yaml.safe_load(path.read_text()) or {}
        assert run_config_problems(config, JOB) == [], path


def test_config_classes_are_read_from_every_configurable_asset_of_the_job():
    """Derived, never listed: every asset whose function takes a dg.Config is validated up front."""
    from persona_assets import config as run_configs

    classes = config_classes(JOB)
    assert classes["divergence_matrices"] is run_configs.DivergenceConfig  # a graph asset, configured as one
    assert classes["legacy_kill_gate_verdicts"] is run_configs.KillGateConfig
    declared = {
        c for c in vars(run_configs).values() if isinstance(c, type) and issubclass(c, dg.Config) and c is not dg.Config
    }
    assert set(classes.values()) == declared  # no config class of config.py is left unchecked


class NewSettings(dg.Config):
    threshold: float = Field(0.5, ge=0.0, le=1.0)


@dg.asset
def new_asset(config: NewSettings) -> int:
    return 1


def test_a_new_asset_with_settings_is_validated_without_being_listed():
    job = dg.Definitions(assets=[new_asset]).resolve_implicit_global_asset_job_def()
    problems = run_config_problems(_ops("new_asset", threshold=2.0), job)
    assert len(problems) == 1 and problems[0].startswith("ops.new_asset.config.threshold")


def test_an_asset_run_alone_names_its_bad_field():
    """Dagster applies the constraints itself when the step builds its config object."""
    result = dg.materialize(
        [eval_set], resources={"llm": CpuLLM()}, run_config=_ops("eval_set", n_questions=0), raise_on_error=False
    )
    assert not result.success
    assert "n_questions" in _step_failures(result)["eval_set"]


def test_a_bad_setting_of_a_late_step_fails_the_first_step(tiny_model_dir, tmp_path):
    """A bad kill-gate threshold stops the run at eval_set: no model step starts."""
    config = run_config(tmp_path, kill_gate_verdicts={"config": {"min_js_std": 1.0}})
    result = materialize(tiny_model_dir, config)
    assert not result.success
    failures = _step_failures(result)
    assert set(failures) == {"eval_set"}
    assert "ops.kill_gate_verdicts.config.min_js_std" in failures["eval_set"] and "[0, ln 2]" in failures["eval_set"]
    assert not started_steps(result) & {"generations", "persona_cosine", "divergence_matrices"}


# ------------------------------------------------------------------ layers beyond the model's depth
def test_layer_beyond_the_model_fails_before_the_weights_load(tiny_model_dir, tmp_path, monkeypatch):
    from resources import model_loading

    loads = []
    real_load = model_loading.load_model_and_tokenizer
    monkeypatch.setattr(
        model_loading, "load_model_and_tokenizer", lambda *a, **k: loads.append(a) or real_load(*a, **k)
    )
    result = materialize(tiny_model_dir, run_config(tmp_path, persona_cosine={"config": {"layers": [1, 7]}}))
    assert not result.success
    assert loads == []  # no step loaded the weights
    failures = _step_failures(result)
    # Both model steps check (whichever runs first stops before its model loads); nothing else fails.
    assert set(failures) <= {"generations", "persona_cosine"} and failures
    for message in failures.values():
        assert "ops.persona_cosine.config.layers: layer index 7 is beyond the model's depth" in message
        assert "valid range 0..2" in message
    assert not started_steps(result) & {"divergence_matrices"}

    llm = CpuLLM(model=str(tiny_model_dir))
    assert llm.num_layers() == 2 and llm._engine is None  # the depth comes from config.json alone


# ------------------------------------------------------------------ existing outputs survive
def _snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_a_bad_config_leaves_existing_outputs_untouched(tiny_model_dir, tmp_path):
    small = {
        "eval_set": {"config": {"personas": PERSONAS[:3], "n_questions": 2}},
        "generations": {"config": {"max_new_tokens": 4}},
    }
    assert materialize(tiny_model_dir, run_config(tmp_path, **small)).success
    data = tmp_path / "data" / "outputs"  # the published set (each run's own files are kept under runs/)
    before = _snapshot(data)
    assert "eval_set.json" in before

    # Caught in eval_set (a range), then in the model steps (a layer beyond the model's depth).
    for bad_ops in (
        {"divergence_matrices": {"config": {"responses_per_batch": 0}}},
        {"persona_cosine": {"config": {"layers": [1, 9]}}},
    ):
        assert not materialize(tiny_model_dir, run_config(tmp_path, **small, **bad_ops)).success
        assert _snapshot(data) == before, bad_ops
