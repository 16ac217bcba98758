"""Shared fixtures: isolated data directories and a tiny random-weight chat model.

The tiny model is a real Llama architecture (2 layers, hidden 64) with random weights and the
real SmolLM2 tokenizer (chat template included), saved as a normal model directory, so every code
path that loads a model runs for real, only faster.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REFERENCE_STUDY = REPO / "data" / "reference_study"  # the published study's results, bundled


# Test temp dirs go to this tmpfs when it exists and has room: every Dagster event is a committed
# sqlite transaction (an fsync: 5–20 ms on the CI disk, 0.02 ms on tmpfs) and the results store
# fsyncs its files, so on disk the suite waits on the disk for minutes. Nothing tested depends on it.
FAST_TEMP = Path("/dev/shm")
FAST_TEMP_MIN_FREE = 4 << 30  # bytes; a whole suite writes a few hundred MB
FAST_TEMP_KEEP = 3  # earlier suites' folders kept for a look after a failure, as pytest keeps 3


def suite_running(folder: Path) -> bool:
    """Whether the pytest process whose id ends the folder's name is still running."""
    try:
        os.kill(int(folder.name.rsplit("-", 1)[-1]), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:  # another user's process
        pass
    return True


def fast_basetemp() -> Path | None:
    """A fresh folder for this suite's temp dirs on tmpfs (older ones pruned), or None."""
    import shutil
    import time

    try:
        if not FAST_TEMP.is_dir() or shutil.disk_usage(FAST_TEMP).free < FAST_TEMP_MIN_FREE:
            return None
        root = FAST_TEMP / f"persona-divergence-tests-{os.getuid()}"
        root.mkdir(exist_ok=True)
        finished = [p for p in root.iterdir() if not suite_running(p)]  # a suite may run pytest inside
        for old in sorted(finished, key=lambda p: p.stat().st_mtime)[: -FAST_TEMP_KEEP or None]:
            shutil.rmtree(old, ignore_errors=True)
        return root / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    except OSError:
        return None


def foreground_signals() -> None:
    """SIGINT and SIGTERM as a process started in the foreground has them.

    A suite started in the background by a non-interactive shell (`make test &`, some CI runners) inherits SIGINT
    ignored. Dagster's interrupt handling copies SIGINT's disposition to SIGTERM, and the processes it starts then
    inherit an ignored SIGTERM, among them the `tail -F` mirrors of each step's output, which it stops with SIGTERM
    and waits 30 s for: a run on a thread other than the main one (tests/test_sensors.py) took a minute longer per
    step. (On Dask workers persona_assets.dask_engine.stoppable_children does this for the product.)"""
    import signal

    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGTERM) == signal.SIG_IGN:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """Temp dirs on tmpfs (above), set before pytest builds its temp-path factory; the xdist
    workers get subfolders of it. Each xdist worker (and what it starts) also computes with its
    share of the cores: two workers of two torch threads each on two cores spin against each other
    (a ci run takes ~60 % more CPU time). Neither changes a result. Signals as in the foreground
    (`foreground_signals`)."""
    foreground_signals()
    worker = getattr(config, "workerinput", None)
    if worker is None:
        if config.option.basetemp is None and (base := fast_basetemp()) is not None:
            config.option.basetemp = str(base)
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = str(max(1, cores // int(worker["workercount"])))
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = threads
    import torch

    torch.set_num_threads(int(threads))


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist, the `slow` tests (the real embedded model, the mutation runs, the browser)
    and so their files (`make test` hands out whole files, in this order) go first, so that the run
    does not end on one of them while the other worker idles. A plain run keeps the file order."""
    if os.environ.get("PYTEST_XDIST_WORKER"):  # each worker collects; all sort the same way
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path, monkeypatch):
    """Every test writes results under its own tmp dir, never into the repository's data/."""
    monkeypatch.setenv("PERSONA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PERSONA_FIGURES_DIR", str(tmp_path / "figures"))
    monkeypatch.delenv("PERSONA_ALERT_WEBHOOK_URL", raising=False)
    monkeypatch.delenv("PERSONA_ALERTS_FILE", raising=False)
    return tmp_path


@pytest.fixture(scope="session")
def embedded_tokenizer_dir() -> Path:
    """Directory of the converted embedded model (converted once per machine, then cached)."""
    from resources.model_loading import local_model_path, resolve_model_source

    return Path(local_model_path(resolve_model_source("embedded")))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, embedded_tokenizer_dir) -> Path:
    """Made once per suite and shared by the xdist workers (tests/shared_runs.py); nothing writes into it."""
    from tests.shared_runs import made_once

    shared = made_once(
        tmp_path_factory, "tiny-llama", lambda folder: save_tiny_model(folder / "model", embedded_tokenizer_dir)
    )
    return shared / "model"  # beside it only the sharing's lock and mark


def save_tiny_model(directory: Path, tokenizer_dir: Path) -> None:
    """A 2-layer Llama with random weights (seed 0) and the embedded model's tokenizer, saved into `directory`."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        # With the usual 0.02 init, random attention is near-uniform and every persona gives
        # almost the same distribution; 0.2 makes the system prompt matter (JS ~0.2 nats).
        initializer_range=0.2,
    )
    with torch.random.fork_rng(devices=[]):  # the tests that follow start from the same random state either way
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)


@pytest.fixture(scope="session")
def nan_model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model with a NaN final norm weight: all logits NaN, as after a float16 overflow
    (generation still runs; the later model steps fail)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        model.model.norm.weight.fill_(float("nan"))
    directory = tmp_path_factory.mktemp("nan-llama")
    model.save_pretrained(directory)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_leakage_run(tiny_model_dir, tmp_path_factory):
    """(result, run directory) of the whole graph on the tiny model with a leakage file, run once
    per process (per pytest-xdist worker that needs it): tests/test_graph.py and tests/test_summary.py
    assert different things on it. Nothing writes into it."""
    from tests.test_graph import PERSONAS, materialize, run_config, write_leakage

    run_dir = tmp_path_factory.mktemp("tiny-leakage-run")
    rows = [
        (s, t, round(0.05 * (i + 1) + 0.01 * j, 3))
        for i, s in enumerate(PERSONAS)
        for j, t in enumerate(PERSONAS)
        if s != t
    ]
    leakage = write_leakage(run_dir / "leak.csv", rows)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PERSONA_DATA_DIR", str(run_dir / "data"))
        env.setenv("PERSONA_FIGURES_DIR", str(run_dir / "figures"))
        return materialize(
            tiny_model_dir, run_config(run_dir, leakage_rates={"config": {"leakage_path": leakage}})
        ), run_dir


@pytest.fixture(scope="session")
def ci_cli_run(tmp_path_factory):
    """The whole graph on configs/ci.yaml through the CLI on the embedded model, once per suite
    (tests/shared_runs.py); read it, or copy it before running more on top."""
    from tests.shared_runs import ci_cli_run

    return ci_cli_run(tmp_path_factory)
