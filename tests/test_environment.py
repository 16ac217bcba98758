"""The environment variables users set map onto resource config, read in one place."""

from __future__ import annotations

import dagster as dg
import pytest

from persona_assets import environment
from resources.gpu_llm import GpuLLM
from resources.llm import CpuLLM


def _resolved(resource, key="r"):
    with dg.build_resources({key: resource}) as built:
        return getattr(built, key)


def test_unset_variables_leave_the_resource_defaults():
    llm = environment.llm_resource({})
    assert isinstance(llm, CpuLLM) and llm.model == "embedded" and llm.dtype == "float32"
    assert environment.results_store({}).data_dir == "data"
    sinks = environment.alert_sinks({})
    assert (sinks.webhook_url, sinks.attempts, sinks.timeout_s, sinks.backoff_s) == ("", 3, 5.0, 0.5)


def test_set_variables_become_env_vars_read_when_the_run_starts(monkeypatch, tmp_path):
    env = {
        "PERSONA_RESOURCES": "gpu",
        "PERSONA_MODEL": "/models/x",
        "PERSONA_DTYPE": "float16",
        "PERSONA_SCORING_DTYPE": "float32",
        "PERSONA_DATA_DIR": str(tmp_path),
    }
    llm = environment.llm_resource(env)
    assert isinstance(llm, GpuLLM)
    assert llm.model == dg.EnvVar("PERSONA_MODEL")  # the UI shows where the value comes from
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    resolved = _resolved(llm)
    assert resolved.model == "/models/x" and resolved.dtype == "float16" and resolved.scoring_dtype == "float32"
    assert resolved.effective_scoring_dtype == "float32"
    assert _resolved(environment.results_store(env)).data_path == tmp_path.resolve()


def test_alert_settings_from_the_environment(monkeypatch, tmp_path):
    env = {
        "PERSONA_ALERT_WEBHOOK_ATTEMPTS": "5",
        "PERSONA_ALERT_WEBHOOK_TIMEOUT_S": "0.5",
        "PERSONA_ALERT_WEBHOOK_BACKOFF_S": "0",
        "PERSONA_ALERTS_FILE": str(tmp_path / "a.jsonl"),
    }
    monkeypatch.setenv("PERSONA_ALERTS_FILE", env["PERSONA_ALERTS_FILE"])
    sinks = _resolved(environment.alert_sinks(env))
    assert (sinks.policy.attempts, sinks.policy.timeout_s, sinks.policy.backoff_s) == (5, 0.5, 0.0)
    assert sinks.jsonl_path == tmp_path / "a.jsonl"


@pytest.mark.parametrize(
    "name, raw",
    [
        ("PERSONA_ALERT_WEBHOOK_ATTEMPTS", "0"),
        ("PERSONA_ALERT_WEBHOOK_ATTEMPTS", "2.5"),
        ("PERSONA_ALERT_WEBHOOK_TIMEOUT_S", "0"),
        ("PERSONA_ALERT_WEBHOOK_TIMEOUT_S", "inf"),
        ("PERSONA_ALERT_WEBHOOK_BACKOFF_S", "-1"),
        ("PERSONA_ALERT_WEBHOOK_BACKOFF_S", "soon"),
    ],
)
def test_bad_alert_setting_names_the_variable(name, raw):
    with pytest.raises(ValueError, match=name):
        environment.alert_sinks({name: raw})


@pytest.mark.parametrize(
    "name, raw", [("PERSONA_RESOURCES", "tpu"), ("PERSONA_GPU_SHARDS", "two"), ("PERSONA_EXECUTOR", "threads")]
)
def test_bad_choice_names_the_variable(name, raw):
    with pytest.raises(ValueError, match=name):
        environment.llm_resource({name: raw}) if name == "PERSONA_RESOURCES" else environment.default_executor_mode(
            {name: raw}
        )


def test_a_scoring_dtype_that_would_round_the_weights_is_refused(monkeypatch):
    monkeypatch.setenv("PERSONA_SCORING_DTYPE", "bfloat16")
    with pytest.raises(Exception) as failure:  # when the run starts (Dagster wraps the resource's error)
        _resolved(environment.llm_resource({"PERSONA_SCORING_DTYPE": "bfloat16"}))
    assert "scoring_dtype must be empty (= dtype) or float32, got 'bfloat16'" in str(failure.value.__cause__)
