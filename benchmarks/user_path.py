"""Benchmark: the user's path (`dagster asset materialize`) against the same work without Dagster.

In one call, on one machine, with the same model directory and run-config file:
  engine   `benchmarks/engine_path.py`: the assets' library calls in one plain Python process
           (its wall time from launch, imports and the one model load included);
  dagster  `dagster asset materialize -m persona_assets.definitions --select 'not group:legacy' -c CONFIG`
           with a fresh DAGSTER_HOME and data directory (nothing cached), from launch to exit.
Each path draws its figures as a first run does: its cache folder links the user's converted models and Vega
bundle but holds no drawings (`cache_without_drawings`), so neither reads back what the other drew.
The legacy group is left out because the engine path does not re-analyse earlier results.
For the Dagster run, the event log gives each step's time; "outside the steps" is the wall time
minus the sum of the steps (the run is in one process, so steps do not overlap), split into the
CLI's start (launch → first step), the gaps between steps and the end (last step → exit).
Both runs' JS matrices are compared (the same calls: equal on the CPU).

    PYTHONPATH=. python benchmarks/user_path.py --config configs/ci.yaml              # CPU, embedded model
    PYTHONPATH=. python benchmarks/user_path.py --config configs/full_12x20.yaml --resources gpu --model DIR
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import hardware  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SELECTION = "not group:legacy"
NEW_ANALYSES_OFF = """ops:
  persona_baseline:
    config:
      max_paraphrases: 0
  token_profiles:
    config:
      n_questions: 1
"""


def log(msg: str = "") -> None:
    print(msg, flush=True)


def cache_without_drawings(work: Path) -> str:
    """An XDG_CACHE_HOME for one path: the entries of ~/.cache/persona-divergence linked in, except the figures'
    drawings (persona_assets.analysis.drawings), which start empty."""
    from persona_assets.analysis.drawings import drawings_dir
    from persona_assets.runs.storage import default_cache_dir

    users, home = default_cache_dir(), work / "xdg-cache"
    folder = home / users.name
    folder.mkdir(parents=True)
    if users.is_dir():
        for entry in users.iterdir():
            if entry.name != drawings_dir(users).name:
                (folder / entry.name).symlink_to(entry.resolve())
    return str(home)


def run_engine(args, env: dict, work: Path) -> tuple[float, dict]:
    command = [
        sys.executable,
        str(REPO / "benchmarks" / "engine_path.py"),
        "--config",
        args.config,
        "--model",
        args.model,
        "--resources",
        args.resources,
        "--work-dir",
        str(work),
    ]
    env = {**env, "XDG_CACHE_HOME": cache_without_drawings(work)}
    start = time.perf_counter()
    out = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"engine path failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    for line in out.stdout.splitlines():
        if line.startswith("[stage]"):
            log("  " + line)
    return wall, json.loads(out.stdout.strip().splitlines()[-1])


def run_dagster(args, env: dict, work: Path) -> tuple[float, float, str]:
    home = work / "dagster_home"
    home.mkdir(parents=True)
    env = {
        **env,
        "DAGSTER_HOME": str(home),
        "PERSONA_DATA_DIR": str(work / "data"),
        "PERSONA_FIGURES_DIR": str(work / "figures"),
        "PERSONA_RESOURCES": args.resources,
        "PERSONA_MODEL": args.model,
        "XDG_CACHE_HOME": cache_without_drawings(work),
    }
    command = [
        sys.executable,
        "-m",
        "dagster",
        "asset",
        "materialize",
        "-m",
        "persona_assets.definitions",
        "--select",
        SELECTION,
        "-c",
        args.config,
    ]
    if args.new_analyses_off:
        # The per-token pass and the within-persona baseline joined the graph after the Phase-1 goals were set:
        # no paraphrases, and the per-token pass on the first question only (its step is reported apart).
        off = work / "new_analyses_off.yaml"
        off.write_text(NEW_ANALYSES_OFF)
        command += ["-c", str(off)]
    launched = time.time()
    start = time.perf_counter()
    out = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    (work / "dagster_console.log").write_text(out.stdout + out.stderr)
    if out.returncode != 0:
        raise SystemExit(f"dagster path failed (exit {out.returncode}):\n{(out.stdout + out.stderr)[-4000:]}")
    return wall, launched, str(home)


def step_windows(instance, run_id: str) -> tuple[dict[str, float], dict[str, float]]:
    """Each step's start and end timestamps (STEP_START, STEP_SUCCESS/FAILURE) from a run's event log."""
    import dagster as dg

    starts, ends = {}, {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or not entry.step_key:
            continue
        if event.event_type == dg.DagsterEventType.STEP_START:
            starts[entry.step_key] = entry.timestamp
        elif event.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
            ends[entry.step_key] = entry.timestamp
    return starts, ends


def step_times(home: str) -> tuple[dict[str, float], float, float, str]:
    """Per step: seconds from STEP_START to its end; and the first start / last end (epoch seconds)."""
    import dagster as dg

    os.environ["DAGSTER_HOME"] = home  # DagsterInstance.get() opens the instance of $DAGSTER_HOME
    with dg.DagsterInstance.get() as instance:
        [run] = instance.get_runs()
        starts, ends = step_windows(instance, run.run_id)
        executor = (run.run_config.get("execution") or {}).get("config") or {}
    steps = {key: ends[key] - starts[key] for key in starts if key in ends}
    return steps, min(starts.values()), max(ends.values()), ", ".join(executor) or "the default (in_process)"


def dagster_js(work: Path) -> np.ndarray:
    return np.array(json.loads((work / "data" / "outputs" / "divergence_matrices.json").read_text())["js_matrix"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/ci.yaml")
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--resources", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--work-dir", default="")
    parser.add_argument(
        "--rounds", type=int, default=1, help="engine then dagster, this many times (the last round is reported)"
    )
    parser.add_argument(
        "--new-analyses-off",
        action="store_true",
        help="the Dagster run without paraphrases and with the per-token pass on the first question only "
        "(the engine path runs neither); the summary also gives the run without the token_profiles step",
    )
    args = parser.parse_args()
    root = Path(args.work_dir or tempfile.mkdtemp(prefix="user-path-"))
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    log("== user path vs engine path")
    log(f"hardware: {hardware.describe()}")
    log(f"config: {args.config}; model: {args.model}; resources: {args.resources}; selection: {SELECTION!r}")
    for round_ in range(1, args.rounds + 1):
        log(f"\n-- round {round_}: engine path (plain Python, same calls)")
        engine_wall, engine = run_engine(args, env, root / f"engine-{round_}")
        log(f"\n-- round {round_}: dagster asset materialize")
        dagster_wall, launched, home = run_dagster(args, env, root / f"dagster-{round_}")
    steps, first_start, last_end, executor = step_times(home)
    stage_sum = sum(engine["stages"].values())
    in_steps = sum(steps.values())
    outside = dagster_wall - in_steps
    log("\n== dagster steps (s), from the run's event log")
    for key, seconds in sorted(steps.items(), key=lambda kv: -kv[1]):
        if seconds >= 0.5:
            log(f"  {key:58s} {seconds:8.2f}")
    small = [s for s in steps.values() if s < 0.5]
    log(f"  {f'{len(small)} other steps (checks, small assets), together':58s} {sum(small):8.2f}")
    js_engine, js_dagster = np.array(engine["js_matrix"]), dagster_js(root / f"dagster-{args.rounds}")
    log("\n== side by side (same call, same machine)")
    log(f"{'engine path: wall from launch (imports + one model load + stages)':70s} {engine_wall:8.2f} s")
    log(
        f"{'   of which stages (model load ' + format(engine['stages']['model load'], '.2f') + ' s)':70s} "
        f"{stage_sum:8.2f} s"
    )
    log(f"{'dagster asset materialize: wall from launch to exit':70s} {dagster_wall:8.2f} s")
    log(f"{'   executor':70s} {executor}")
    log(f"{'   inside the steps (sum over ' + str(len(steps)) + ' steps)':70s} {in_steps:8.2f} s")
    log(f"{'   outside the steps':70s} {outside:8.2f} s ({outside / dagster_wall:.1%} of the run)")
    log(f"{'      launch -> first step (CLI start, definitions, run launch)':70s} {first_start - launched:8.2f} s")
    log(f"{'      between steps':70s} {last_end - first_start - in_steps:8.2f} s")
    log(f"{'      last step -> exit':70s} {launched + dagster_wall - last_end:8.2f} s")
    log(f"{'ratio dagster / engine (both from launch)':70s} {dagster_wall / engine_wall:8.3f}")
    if args.new_analyses_off:
        profiles = sum(seconds for key, seconds in steps.items() if key.startswith("token_profiles"))
        log(
            f"{'dagster run without the token_profiles step (' + format(profiles, '.2f') + ' s, first question)':70s} "
            f"{dagster_wall - profiles:8.2f} s"
        )
    same = np.array_equal(js_engine, js_dagster)
    diff = float(np.max(np.abs(js_engine - js_dagster)))
    log(f"{'JS matrices equal (engine vs dagster)':70s} {same} (max |difference| {diff:.3g} nats)")


if __name__ == "__main__":
    main()
