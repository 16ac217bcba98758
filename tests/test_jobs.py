"""The scenarios as named jobs: the Launchpad opens with the committed YAML, and the job runs with it."""

from __future__ import annotations

import dagster as dg
import pytest

from persona_assets.assets.legacy import legacy_assets
from persona_assets.checks import all_checks
from persona_assets.definitions import all_assets, defs
from persona_assets.environment import storage_resources
from persona_assets.jobs import SCENARIOS, SettingsRefused, scenario_config, scenario_jobs
from persona_assets.run_config_validation import run_config_problems
from resources.llm import CpuLLM


def test_every_scenario_is_a_job_whose_default_config_is_its_yaml():
    for name, (file_name, _, _) in SCENARIOS.items():
        job = defs.resolve_job_def(name)
        assert job.description
        # The defaults the Launchpad shows hold every setting of the scenario's file (the rest: the schema's
        # own defaults), and the file passes the run's own validation.
        defaults = job.config_mapping.config_schema.as_field().default_value
        scenario = scenario_config(file_name)
        for op, settings in scenario["ops"].items():
            assert {k: defaults["ops"][op]["config"][k] for k in settings["config"]} == settings["config"], (name, op)
        assert run_config_problems(scenario, job) == [], name
        # Launched as it opens (nothing typed) or with the file pasted: both pass the job's whole schema.
        for launched in ({}, scenario):
            dg.validate_run_config(job, launched)


def test_ci_job_runs_its_preset_and_evaluates_the_checks(tiny_model_dir):
    local = dg.Definitions(
        assets=[*all_assets, *legacy_assets],
        asset_checks=all_checks,
        jobs=scenario_jobs(all_assets, legacy_assets),
        resources={"llm": CpuLLM(model=str(tiny_model_dir)), **storage_resources()},
    )
    with dg.instance_for_test() as instance:
        result = local.resolve_job_def("ci").execute_in_process(instance=instance, raise_on_error=False)
    assert result.success
    evals = result.output_for_node("eval_set")
    assert [p["name"] for p in evals["personas"]] == scenario_config("ci.yaml")["ops"]["eval_set"]["config"]["personas"]
    assert len(evals["questions"]) == 2
    checks = {e.check_name for e in result.get_asset_check_evaluations()}
    assert {"kill_discrimination", "kill_redundancy", "js_symmetric"} <= checks
    assert all(not e.asset_key.path[-1].startswith("legacy") for e in result.get_asset_materialization_events())


def test_a_scenario_job_refuses_a_setting_out_of_range_before_a_run_exists():
    """The job's config mapping checks the ranges at launch: no run is created, every bad setting is named."""
    job = defs.resolve_job_def("ci")
    bad = {
        "ops": {
            "leakage_correlations": {"config": {"n_bootstrap": -1}},
            "kill_gate_verdicts": {"config": {"min_js_std": 2.0}},
        }
    }
    with dg.instance_for_test() as instance:
        with pytest.raises(SettingsRefused) as raised:
            job.execute_in_process(run_config=bad, instance=instance)
        assert not instance.get_runs()
    message = str(raised.value)
    assert message.startswith("run refused, nothing was started")
    assert "ops.leakage_correlations.config.n_bootstrap" in message and "(got -1)" in message
    assert "ops.kill_gate_verdicts.config.min_js_std" in message and "[0, ln 2]" in message
    # The same settings within range pass, and the scenario's own values fill what the launch left out.
    good = {"ops": {"leakage_correlations": {"config": {"n_bootstrap": 10}}}}
    mapped = job.config_mapping.resolve_from_unvalidated_config(good)
    assert mapped["ops"]["leakage_correlations"]["config"]["n_bootstrap"] == 10
    assert mapped["ops"]["generations"]["config"]["max_new_tokens"] == 16  # from configs/ci.yaml
