"""The whole graph on a real Dask cluster (a scheduler and two worker processes over TCP on 127.0.0.1).

The matrices must equal the single-process run's bit for bit, every check must run, a worker
killed mid-run (SIGKILL) must not lose finished work, and a data directory the workers cannot
share must stop the run before its first step.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import dask
import pytest
from dask.distributed import Client, LocalCluster

from persona_assets.dask_engine import MARKER_NAME, SharedStorageError, check_storage_marker, write_storage_marker
from tests.dask_job import DIVERGENCE_TABLES, divergence_job, persona_job

from persona_assets.checks import all_checks
from persona_assets.definitions import all_assets
from persona_assets.environment import storage_resources
from resources.llm import CpuLLM
from tests.test_graph import materialize, run_config, write_leakage

DIVERGENCES = divergence_job

WORKER = {
    "n_workers": 2,
    "threads_per_worker": 1,
    "processes": True,
    "host": "127.0.0.1",
    "protocol": "tcp",
    "dashboard_address": ":0",
    "resources": {"GPU": 1},
}
OUTPUTS = ("divergence_matrices.json", "divergence_per_response.csv", "divergence_per_pair_question.csv")


def _leakage(tmp_path: Path) -> str:
    from tests.test_graph import PERSONAS

    rows = [
        (s, t, round(0.05 * (i + 1) + 0.01 * j, 3))
        for i, s in enumerate(PERSONAS)
        for j, t in enumerate(PERSONAS)
        if s != t
    ]
    return write_leakage(tmp_path / "leak.csv", rows)


def _ops(tmp_path: Path, shards: int, **divergence) -> dict:
    config = run_config(
        tmp_path,
        leakage_rates={"config": {"leakage_path": _leakage(tmp_path)}},
        divergence_matrices={"config": {"shards": shards, **divergence}},
    )
    return config.ops


def _use_data_dir(monkeypatch, root: Path) -> Path:
    monkeypatch.setenv("PERSONA_DATA_DIR", str(root / "data"))
    monkeypatch.setenv("PERSONA_FIGURES_DIR", str(root / "figures"))
    return root / "data"


DIVERGENCE_OPS = ("eval_set", "generations", "divergence_matrices")


def _reference(
    tiny_model_dir, tmp_path, monkeypatch, only_divergences: bool = False, **divergence
) -> tuple[Path, set[str]]:
    """The single-process run (one shard): its output files and the checks it evaluated.

    Dask starts its workers with one BLAS/OpenMP thread (distributed.nanny.pre-spawn-environ); the
    reference runs with one torch thread too, since the noise floor measures float noise, whose
    bits depend on the thread count (the matrices do not)."""
    import torch

    data = _use_data_dir(monkeypatch, tmp_path / "in_process")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ops = _ops(tmp_path, 1, **divergence)
        if only_divergences:
            result = dg.materialize(
                [*all_assets, *all_checks],
                selection=dg.AssetSelection.assets(*DIVERGENCE_TABLES).upstream(),
                resources={"llm": CpuLLM(model=str(tiny_model_dir)), **storage_resources()},
                run_config=dg.RunConfig(ops={name: ops[name] for name in DIVERGENCE_OPS}),
            )
        else:
            result = materialize(tiny_model_dir, dg.RunConfig(ops=ops))
    finally:
        torch.set_num_threads(threads)
    assert result.success
    return data / "outputs", {e.check_name for e in result.get_asset_check_evaluations()}


def _instance(tmp_path: Path):
    """A persistent instance (sqlite under tmp_path): the runs' steps leave this process."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text("")
    return dg.instance_for_test(temp_dir=str(home))


def _run_on_dask(instance, tmp_path, cluster: dict, shards: int = 2, job=persona_job, **divergence):
    ops = _ops(tmp_path, shards, **divergence)
    if job is divergence_job:
        ops = {name: ops[name] for name in DIVERGENCE_OPS}
    config = {"ops": ops, "execution": {"config": {"dask": {"cluster": cluster}}}}
    return dg.execute_job(dg.reconstructable(job), instance=instance, run_config=config, raise_on_error=False)


def _engine_messages(instance, run_id: str) -> list[dg.EventLogEntry]:
    return [
        r.event_log_entry
        for r in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT).records
    ]


def _assert_same_outputs(reference: Path, outputs: Path) -> None:
    for name in OUTPUTS:
        assert (outputs / name).read_bytes() == (reference / name).read_bytes(), name


def test_graph_on_local_dask_cluster_equals_one_process(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("PERSONA_TEST_MODEL", str(tiny_model_dir))
    reference, reference_checks = _reference(tiny_model_dir, tmp_path, monkeypatch)
    data = _use_data_dir(monkeypatch, tmp_path / "dask")
    with _instance(tmp_path) as instance:
        result = _run_on_dask(instance, tmp_path, {"local": WORKER})
        assert result.success
        evaluations = result.get_asset_check_evaluations()
        assert {e.check_name for e in evaluations} == reference_checks and len(evaluations) == len(reference_checks)
        assert all(e.passed for e in evaluations if e.severity == dg.AssetCheckSeverity.ERROR)
        messages = _engine_messages(instance, result.run_id)
    _assert_same_outputs(reference, data / "outputs")

    connected = [m for m in messages if "Dask cluster tcp://127.0.0.1:" in (m.dagster_event.message or "")]
    assert connected and "2 workers connected" in connected[0].dagster_event.message
    ran_on = {
        m.step_key: m.dagster_event.event_specific_data.metadata["dask_worker"].value
        for m in messages
        if m.step_key and "dask_worker" in m.dagster_event.event_specific_data.metadata
    }
    shards = {key: worker for key, worker in ran_on.items() if "score_divergence_shard[" in key}
    assert sorted(key.rsplit("[", 1)[1] for key in shards) == ["shard_0]", "shard_1]"]
    assert len(set(ran_on.values())) == 2 and all(w.startswith("tcp://127.0.0.1:") for w in ran_on.values())
    assert (data / "steps" / result.run_id / MARKER_NAME).is_file()


@contextmanager
def sigterm_ignored():
    """SIGTERM ignored in this process meanwhile (the processes it starts inherit that)."""
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def running_tails(folder: Path, wait_s: float = 10.0) -> list[int]:
    """The `tail -F` processes (Dagster's output mirrors) on files under `folder` still running after `wait_s`
    (a killed worker's mirrors are stopped by Dagster's orphan watcher within a second or two)."""
    deadline = time.monotonic() + wait_s
    while True:
        found = []
        for proc in Path("/proc").iterdir():
            try:
                words = (proc / "cmdline").read_bytes().split(b"\0")
                state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if words[:2] == [b"tail", b"-F"] and state != "Z" and any(str(folder).encode() in w for w in words):
                found.append(int(proc.name))
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def _kill_a_shard_worker(client: Client, cache: Path, killed: list[int], stop: threading.Event) -> None:
    """SIGKILLs a worker running a shard as soon as the shards have cached their first response."""
    pids = client.run(os.getpid)  # {worker address: pid}, asked before the run so the kill is quick
    while not stop.is_set():
        if cache.is_dir() and any(cache.glob("*/*.json")):
            processing = client.processing()
            shard_workers = [
                w for w, keys in processing.items() if any("score_divergence_shard" in str(k) for k in keys)
            ]
            if shard_workers:
                os.kill(pids[shard_workers[0]], signal.SIGKILL)
                killed.append(len(list(cache.glob("*/*.json"))))
                return
        time.sleep(0.002)


def test_worker_killed_mid_run_loses_no_finished_work(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("PERSONA_TEST_MODEL", str(tiny_model_dir))
    slow = {"responses_per_batch": 1}  # one cache entry per response: the kill lands between entries
    reference, _ = _reference(tiny_model_dir, tmp_path, monkeypatch, only_divergences=True, **slow)
    data = _use_data_dir(monkeypatch, tmp_path / "dask")
    cache = data / "cache" / "divergences"
    # No second attempt on another worker (Dask's default is 3): the killed step fails its run, and
    # the re-run must resume from what the dead worker had cached.
    no_retry = dask.config.set({"distributed.scheduler.allowed-failures": 0})
    # Workers that ignore SIGTERM, as workers restarted by their nanny were seen to: Dagster stops each step's
    # `tail -F` output mirrors with SIGTERM, so there each step waited a minute and left its tails running.
    with sigterm_ignored():
        cluster = LocalCluster(**WORKER)
    with no_retry, cluster, Client(cluster) as client, _instance(tmp_path) as instance:
        killed: list[int] = []
        stop = threading.Event()
        killer = threading.Thread(target=_kill_a_shard_worker, args=(client, cache, killed, stop), daemon=True)
        killer.start()
        existing = {"existing": {"address": cluster.scheduler_address}}
        first = _run_on_dask(instance, tmp_path, existing, job=DIVERGENCES, **slow)
        stop.set()
        killer.join()
        assert killed, "no shard was running while its worker could be killed"
        assert not first.success
        failures = [e for e in first.all_events if e.is_step_failure]
        assert any(
            "score_divergence_shard" in e.step_key and "KilledWorker" in str(e.step_failure_data.error)
            for e in failures
        )
        rerun = _run_on_dask(instance, tmp_path, existing, job=DIVERGENCES, **slow)
        assert rerun.success
        scored = rerun.asset_materializations_for_node("divergence_matrices")[0].metadata
    _assert_same_outputs(reference, data / "outputs")
    assert running_tails(tmp_path) == [], "output mirrors of finished steps are still running"
    # What was cached before the kill is never scored again.
    responses = scored["responses"].value
    assert 0 < killed[0] < responses  # the kill landed mid-run
    assert scored["responses_scored_now"].value <= responses - killed[0]


def test_relative_data_dir_refused_before_any_step(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("PERSONA_TEST_MODEL", str(tiny_model_dir))
    monkeypatch.setenv("PERSONA_DATA_DIR", "relative/data")
    monkeypatch.chdir(tmp_path)
    with _instance(tmp_path) as instance:
        result = _run_on_dask(instance, tmp_path, {"local": {**WORKER, "n_workers": 1}})
        assert not result.success
        failure = [
            r.event_log_entry
            for r in instance.get_records_for_run(result.run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records
        ]
        assert "is relative" in str(failure[0].dagster_event.event_specific_data.error)
        assert not instance.get_records_for_run(result.run_id, of_type=dg.DagsterEventType.STEP_START).records
    assert not (tmp_path / "relative").exists()


def test_marker_checks_name_the_problem(tmp_path):
    with pytest.raises(SharedStorageError, match="is relative"):
        write_storage_marker("data", "run-1")
    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(SharedStorageError, match="not reachable"):
        write_storage_marker(str(blocked / "data"), "run-1")
    marker = write_storage_marker(str(tmp_path / "shared"), "run-1")
    check_storage_marker(str(marker), "run-1")
    with pytest.raises(SharedStorageError, match="does not see"):
        check_storage_marker(str(marker), "run-2")  # another run's marker: not proof of this run's storage
    with pytest.raises(SharedStorageError, match="does not see"):
        check_storage_marker(str(tmp_path / "elsewhere" / MARKER_NAME), "run-1")
    assert json.loads(marker.read_text())["run_id"] == "run-1"


def test_model_steps_and_shards_ask_dask_for_one_gpu(tiny_model_dir, monkeypatch):
    from dagster_dask.executor import get_dask_resource_requirements

    monkeypatch.setenv("PERSONA_TEST_MODEL", str(tiny_model_dir))
    needs = {op.name: get_dask_resource_requirements(op.tags) for op in persona_job().graph.iterate_op_defs()}
    model_steps = {
        "generations",
        "persona_cosine",
        "score_divergence_shard",
        "aggregate_divergences",
        "persona_baseline",
        "token_profiles",
    }
    assert {name for name, need in needs.items() if need} == model_steps
    assert all(needs[name] == {"GPU": 1} for name in model_steps)
    assert not needs["eval_set"] and not needs["figures"] and not needs["plan_teacher_forcing"]
    pods = {
        op.name: json.loads(op.tags["dagster-k8s/config"])
        for op in persona_job().graph.iterate_op_defs()
        if "dagster-k8s/config" in op.tags
    }
    assert set(pods) == model_steps
    assert all(pod["container_config"]["resources"]["limits"] == {"nvidia.com/gpu": "1"} for pod in pods.values())


def test_persona_executor_env_selects_dask():
    from persona_assets.environment import default_executor_mode

    assert default_executor_mode({"PERSONA_EXECUTOR": "dask"}) == "dask"
    with pytest.raises(ValueError, match="in_process, multiprocess, dask"):
        default_executor_mode({"PERSONA_EXECUTOR": "celery"})


def test_dask_executor_config_is_dagster_dasks():
    from dagster_dask import dask_executor

    from persona_assets.dask_engine import default_cluster_config
    from persona_assets.executor import _processed

    assert default_cluster_config({}) == {"cluster": {"local": {"resources": {"GPU": 1}}}}
    given = {"cluster": {"local": {"n_workers": 4, "resources": {"GPU": 2}}}}
    assert default_cluster_config(given) == given
    existing = {"cluster": {"existing": {"address": "tcp://10.0.0.1:8786"}}}
    assert _processed(dask_executor, default_cluster_config(existing)) == existing
    assert (
        _processed(dask_executor, {"cluster": {"slurm": {"cores": 8, "memory": "64GB"}}})["cluster"]["slurm"]["cores"]
        == 8
    )
    with pytest.raises(dg.DagsterInvalidConfigError, match="nonsense"):
        _processed(dask_executor, {"cluster": {"nonsense": {}}})


@pytest.mark.parametrize("name", ["dask_local", "dask_existing", "dask_slurm"])
def test_sample_cluster_configs_are_valid(name):
    import yaml
    from dagster_dask import dask_executor

    from persona_assets.dask_engine import default_cluster_config
    from persona_assets.definitions import defs
    from persona_assets.executor import _processed

    repo = Path(__file__).resolve().parents[1]
    sample = yaml.safe_load((repo / "configs" / "cluster" / f"{name}.yaml").read_text())
    scenario = yaml.safe_load((repo / "configs" / "full_12x20.yaml").read_text())
    merged = {**scenario, **sample, "ops": {**scenario["ops"], **sample["ops"]}}
    assert dg.validate_run_config(defs.resolve_implicit_global_asset_job_def(), merged)
    ((cluster_type, cluster),) = _processed(
        dask_executor, default_cluster_config(sample["execution"]["config"]["dask"])
    )["cluster"].items()
    assert sample["ops"]["divergence_matrices"]["config"]["shards"] == cluster.get("n_workers", 2)
    if cluster_type == "slurm":  # the job script dask-jobqueue would submit (nothing is submitted: n_workers 0)
        from dask_jobqueue import SLURMCluster

        with SLURMCluster(**{**cluster, "n_workers": 0, "log_directory": None}) as slurm:
            script = slurm.job_script()
        assert "#SBATCH --gres=gpu:1" in script and "--resources GPU=1" in script and "#SBATCH -t 04:00:00" in script
        assert "export PERSONA_DATA_DIR=/shared/persona-divergence" in script


@pytest.mark.parametrize("mode", ["in_process", "multiprocess", "dask"])
def test_each_mode_builds_its_executor(mode, tiny_model_dir, monkeypatch, tmp_path):
    from dagster._core.executor.in_process import InProcessExecutor
    from dagster._core.executor.multiprocess import MultiprocessExecutor

    from persona_assets.dask_engine import PersonaDaskExecutor
    from persona_assets.executor import persona_executor

    monkeypatch.setenv("PERSONA_TEST_MODEL", str(tiny_model_dir))
    executor_def = persona_executor()
    given = {"dask": {"cluster": {"existing": {"address": "tcp://127.0.0.1:8786"}}}}.get(mode, {})
    with _instance(tmp_path) as instance:
        context = dg.InitExecutorContext(
            job=dg.reconstructable(persona_job),
            executor_def=executor_def,
            executor_config={mode: given},
            instance=instance,
        )
        executor = executor_def.executor_creation_fn(context)
    kind = {"in_process": InProcessExecutor, "multiprocess": MultiprocessExecutor, "dask": PersonaDaskExecutor}[mode]
    assert type(executor) is kind
    assert bool(executor_def.get_requirements({mode: given})) == (mode != "in_process")
    if mode == "multiprocess":  # our limits: model steps one at a time, shards side by side
        assert {(limit["value"], limit["limit"]) for limit in executor._tag_concurrency_limits} == {
            ("gpu", 1),
            ("gpu_shard", 64),
        }
    if mode == "dask":
        assert executor.cluster_type == "existing" and executor.cluster_configuration == {
            "address": "tcp://127.0.0.1:8786"
        }
