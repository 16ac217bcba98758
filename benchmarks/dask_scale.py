"""Benchmark: the N = 111 slice through Dagster on the Dask engine, one worker per GPU, 1 vs K GPUs.

Each configuration is one Dagster run of benchmarks/dask_slice.py's job (plan → K shard steps →
collect) in this call, on this machine:
  in_process   the project's default executor, one shard (the baseline without Dask);
  dask K       `execution: {config: {dask: {cluster: {local: {n_workers: K, resources: {GPU: 1}}}}}}`,
               K shards: a LocalCluster of K worker processes, each shard step a Dask task on GPU k.
Reported per run, from the run's event log and the shard steps' own clocks:
  time to first step  launch of the run → the first STEP_START (cluster start, workers, imports);
  per-step overhead   a step's Dagster duration minus the work inside it (model build + warm-up +
                      scoring), and the dispatch gap (the step's inputs ready → its STEP_START);
  scoring wall        first shard's scoring start → last shard's end (as in gpu_scale.py), and the
                      run's wall from launch; speed-ups over 1 GPU on both.
The cache entries of the 1- and K-GPU runs are compared (different packed batches on the GPU).

    PYTHONUNBUFFERED=1 PYTHONPATH=. python benchmarks/dask_scale.py --gpus 1,2
    PYTHONPATH=. python benchmarks/dask_scale.py --tiny          # CPU smoke test
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dagster as dg  # noqa: E402

from benchmarks.dask_slice import SliceConfig, slice_job  # noqa: E402
from benchmarks.gpu_scale import compare  # noqa: E402
from benchmarks.hardware import describe as hardware  # noqa: E402

SLICE_FIELDS = [name for name in SliceConfig.model_fields if name not in ("cache_dir", "shards")]


def log(msg: str = "") -> None:
    print(msg, flush=True)


def run_once(args, root: Path, label: str, shards: int, execution: dict) -> dict:
    cache = root / label / "cache"
    settings = {**{name: getattr(args, name) for name in SLICE_FIELDS}, "cache_dir": str(cache), "shards": shards}
    ops = {name: {"config": settings} for name in ("plan_slice", "score_slice_shard")}
    home = root / label / "home"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text("")
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        launched = time.time()
        with dg.execute_job(
            dg.reconstructable(slice_job),
            instance=instance,
            raise_on_error=False,
            run_config={"ops": ops, "execution": {"config": execution}},
        ) as result:
            wall = time.time() - launched
            if not result.success:
                raise SystemExit(f"{label}: run failed")
            shards_out = result.output_for_node("collect_slice")["shards"]
        starts, ends = {}, {}
        for record in instance.get_records_for_run(result.run_id).records:
            entry = record.event_log_entry
            event = entry.dagster_event
            if event is None or not entry.step_key:
                continue
            if event.event_type == dg.DagsterEventType.STEP_START:
                starts[entry.step_key] = entry.timestamp
            elif event.event_type == dg.DagsterEventType.STEP_SUCCESS:
                ends[entry.step_key] = entry.timestamp
    return {
        "label": label,
        "wall": wall,
        "launched": launched,
        "starts": starts,
        "ends": ends,
        "shards": shards_out,
        "cache": str(cache),
    }


def report(run: dict) -> None:
    starts, ends, shards = run["starts"], run["ends"], run["shards"]
    shard_keys = sorted(k for k in starts if k.startswith("score_slice_shard"))
    log(f"\n== {run['label']}")
    log(
        f"  run wall from launch {run['wall']:.2f} s; time to first step {min(starts.values()) - run['launched']:.2f} s"
    )
    for key, shard in zip(shard_keys, shards):
        step = ends[key] - starts[key]
        work = shard["end"] - shard["entered"]
        log(
            f"  {key}: on {shard['device']}, {shard['responses']} responses, {shard['sequences']} sequences; step "
            f"{step:.2f} s = "
            f"model build + warm-up {shard['start'] - shard['entered']:.2f} s + scoring "
            f"{shard['end'] - shard['start']:.2f} s "
            f"+ overhead {step - work:.2f} s; dispatch gap {starts[key] - ends['plan_slice']:.2f} s"
        )
    log(
        f"  collect_slice: dispatch gap {starts['collect_slice'] - max(ends[k] for k in shard_keys):.2f} s, "
        f"step {ends['collect_slice'] - starts['collect_slice']:.2f} s"
    )
    run["scoring_wall"] = max(s["end"] for s in shards) - min(s["start"] for s in shards)
    tokens = sum(s["scored_tokens"] for s in shards)
    log(
        f"  scoring wall {run['scoring_wall']:.2f} s; {tokens:,} scored tokens -> {tokens / run['scoring_wall']:,.0f} "
        "scored tokens/s"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny model on CPU (smoke test)")
    parser.add_argument("--gpus", default="1,2", help="Dask worker counts (one GPU each), e.g. 1,2 or 1,2,4")
    parser.add_argument("--no-in-process", action="store_true", help="skip the in-process baseline run")
    parser.add_argument("--work-dir", default="")
    for name in SLICE_FIELDS[1:]:
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=SliceConfig.model_fields[name].default)
    args = parser.parse_args(argv)
    if args.tiny:
        args.response_len, args.len_jitter, args.system_min, args.system_max, args.max_batch_tokens = 24, 4, 5, 12, 2048
    counts = [int(g) for g in args.gpus.split(",")]

    import dagster_dask
    import distributed
    import torch

    log("== hardware and versions")
    log(f"hardware: {hardware()}")
    if torch.cuda.is_available():
        log(f"devices: {[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}")
    log(
        f"python {platform.python_version()}, torch {torch.__version__}, dagster {dg.__version__}, dagster-dask "
        f"{dagster_dask.__version__}, distributed {distributed.__version__}"
    )
    log(f"slice: {args.sources} sources x {args.questions} questions, {args.personas} personas; {vars(args)}")
    if not args.tiny and torch.cuda.is_available() and max(counts) > torch.cuda.device_count():
        raise SystemExit(f"asked for {max(counts)} GPUs, {torch.cuda.device_count()} visible")

    root = Path(args.work_dir or tempfile.mkdtemp(prefix="dask-scale-"))
    runs = {}
    if not args.no_in_process:
        runs["in_process"] = run_once(args, root, "in_process, 1 shard", 1, {"in_process": {}})
    for n in counts:
        local = {
            "n_workers": n,
            "threads_per_worker": 1,
            "processes": True,
            "resources": {"GPU": 1},
            "memory_limit": 0,
            "dashboard_address": ":0",
        }
        runs[n] = run_once(
            args, root, f"dask, {n} worker(s) = {n} shard(s)", n, {"dask": {"cluster": {"local": local}}}
        )
    for run in runs.values():
        report(run)

    log("\n== summary (same call, same machine)")
    base = runs[counts[0]]
    for key, run in runs.items():
        line = f"{run['label']:32s} run wall {run['wall']:8.2f} s, scoring wall {run['scoring_wall']:8.2f} s"
        if key != counts[0] and key != "in_process":
            line += (
                f"; speed-up vs {counts[0]} worker: run {base['wall'] / run['wall']:.2f}x, "
                f"scoring {base['scoring_wall'] / run['scoring_wall']:.2f}x"
            )
        log(line)
    for n in counts[1:]:
        entries, worst = compare(base["cache"], runs[n]["cache"])
        log(
            f"cache entries {counts[0]} vs {n} workers: {entries} responses in both, max relative difference of a pair "
            f"value {worst:.2e}"
        )


if __name__ == "__main__":
    main()
