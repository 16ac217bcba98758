"""Benchmark: `make job`'s divergence step on the CPU, with where its time goes.

The shape of configs/demo.yaml on the real embedded model (SmolLM2-135M-Instruct, float32), through
the real assets and resources (`persona_assets.environment.resources()`): eval_set and generations
are materialized once into `--work-dir` (reused by later calls, so rounds compare the same
responses), then the graph asset `divergence_matrices` alone, `--rounds` times, each time with an
empty divergence cache. Per round it prints the steps' times from the run's event log
(score_divergence_shard + aggregate_divergences = the step the issue's goal is about), the
process's CPU seconds, the load average before and after (a shared machine inflates everything),
the noise floor the run reports, and the inclusive seconds of the step's phases (timers wrapped
around the library functions; the noise floor's re-scoring contains its own forwards and
divergences, so the phases overlap and do not add up).

`--save-values FILE` keeps the per-response table (divergence_per_response.csv); `--compare FILE`
prints the largest difference of every response-mean JS / KL against such a file, next to the
run's noise floor.

    .venv/bin/python benchmarks/cpu_divergence_step.py --work-dir /tmp/divstep --compare before.csv
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import hardware  # noqa: E402
from benchmarks.cpu_shared_prefixes import cpu_seconds, load_average, log  # noqa: E402
from benchmarks.user_path import step_windows  # noqa: E402

KEYS = ["generator", "question_index", "persona_a", "persona_b"]
STEP = ("score_divergence_shard", "aggregate_divergences")


class PhaseTimers:
    """Inclusive wall seconds and call counts of wrapped functions (outermost call only per name)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._active: set[str] = set()

    def wrap(self, owner, attribute: str, name: str) -> None:
        original = getattr(owner, attribute)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            if name in self._active:  # a recursive or nested call of the same phase
                return original(*args, **kwargs)
            self._active.add(name)
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - started
                self.calls[name] += 1
                self._active.discard(name)

        setattr(owner, attribute, timed)

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()


def install_timers() -> PhaseTimers:
    import persona_assets.assets.divergence_matrices as asset
    import persona_assets.measure.divergence as divergence
    import persona_assets.measure.divergence_store as store
    import resources.hf_engine as hf_engine
    import resources.llm as llm

    timers = PhaseTimers()
    timers.wrap(asset, "response_jobs", "response_jobs (templating, keys)")
    timers.wrap(asset, "measure_noise_floor", "noise floor (its re-scoring included)")
    timers.wrap(llm.LLMResource, "load_for_teacher_forcing", "model load")
    timers.wrap(hf_engine.HFEngine, "prefix_pool", "prefix K/V (shared prefixes)")
    timers.wrap(hf_engine.HFEngine, "response_logits", "forward + LM head")
    timers.wrap(divergence, "pair_divergences", "float64 divergences (pair_divergences)")
    timers.wrap(store.DivergenceCache, "put", "cache writes")
    timers.wrap(store, "cached_rows", "cache reads (aggregate)")
    return timers


def ensure_generations(args, work: Path) -> None:
    import dagster as dg
    import yaml

    from persona_assets import environment
    from persona_assets.assets.eval_set import eval_set
    from persona_assets.assets.generations import generations

    if (work / "data" / "outputs" / "generations.json").exists():
        log(f"generations: reused from {work / 'data'}")
        return
    ops = yaml.safe_load((REPO / args.config).read_text())["ops"]
    started = time.perf_counter()
    result = dg.materialize(
        [eval_set, generations],
        resources=environment.resources(),
        run_config=dg.RunConfig(ops={k: v for k, v in ops.items() if k in ("eval_set", "generations")}),
    )
    assert result.success
    log(f"generations: materialized in {time.perf_counter() - started:.1f} s (not part of the step)")


def step_seconds(instance, run_id: str) -> dict[str, float]:
    starts, ends = step_windows(instance, run_id)
    return {key: ends[key] - starts[key] for key in starts if key in ends}


def run_step(args, work: Path, timers: PhaseTimers) -> tuple[dict, dict[str, float]]:
    import dagster as dg
    import yaml

    from persona_assets import environment
    from persona_assets.assets.divergence_matrices import divergence_matrices
    from persona_assets.assets.eval_set import eval_set
    from persona_assets.assets.generations import generations

    shutil.rmtree(work / "data" / "cache" / "divergences", ignore_errors=True)
    ops = yaml.safe_load((REPO / args.config).read_text())["ops"]
    timers.reset()
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(
            [divergence_matrices, eval_set.to_source_asset(), generations.to_source_asset()],
            resources=environment.resources(),
            instance=instance,
            run_config=dg.RunConfig(ops={k: v for k, v in ops.items() if k == "divergence_matrices"}),
            selection=list(divergence_matrices.keys),
        )
        assert result.success
        steps = step_seconds(instance, result.run_id)
    [materialization] = [
        event.materialization
        for event in result.get_asset_materialization_events()
        if event.materialization.asset_key == dg.AssetKey("divergence_matrices")
    ]
    meta = {k: v.value for k, v in materialization.metadata.items()}
    return meta, steps


def compare(table, reference_path: Path, floor: dict) -> None:
    import pandas as pd

    reference = pd.read_csv(reference_path).set_index(KEYS).sort_index()
    table = table.set_index(KEYS).sort_index()
    assert table.index.equals(reference.index), "the two tables hold different responses or pairs"
    log(
        f"\n== values against {reference_path.name} (the run's noise floor: JS {floor.get('js_abs_nats'):.3g} nats "
        "abs, "
        f"{floor.get('js_rel'):.3g} relative)"
    )
    for column in ("js", "kl_ab", "kl_ba"):
        a, b = table[column].to_numpy(), reference[column].to_numpy()
        rel = abs(a - b) / abs(b)
        log(
            f"response-mean {column:5s}: max abs difference {abs(a - b).max():.2e} nats, max relative {rel.max():.2e}, "
            f"bit-identical {int((a == b).sum())}/{len(a)} rows"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--work-dir", required=True, help="holds the generations between calls")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--save-values", default="", help="copy the last round's divergence_per_response.csv here")
    parser.add_argument("--compare", default="", help="a divergence_per_response.csv to compare the last round with")
    args = parser.parse_args()
    work = Path(args.work_dir).resolve()
    os.environ["PERSONA_DATA_DIR"] = str(work / "data")
    os.environ["PERSONA_FIGURES_DIR"] = str(work / "figures")

    import pandas as pd
    import torch
    import transformers

    log("== divergence step of configs/demo.yaml on the CPU")
    log(f"hardware: {hardware.describe()}")
    log(
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), transformers {transformers.__version__}; "
        f"niceness {os.nice(0)}; load average at start {load_average()}"
    )
    log(f"config: {args.config}; work dir {work}")
    ensure_generations(args, work)
    timers = install_timers()
    for round_ in range(1, args.rounds + 1):
        load_before, cpu_before = load_average(), cpu_seconds()
        started = time.perf_counter()
        meta, steps = run_step(args, work, timers)
        wall = time.perf_counter() - started
        used = cpu_seconds() - cpu_before
        step = sum(s for key, s in steps.items() if key.split(".")[-1].startswith(STEP))
        floor = meta["noise_floor"]
        log(f"\n-- round {round_}: load average before {load_before}, after {load_average()} (1, 5, 15 min)")
        log(
            f"divergence step (score_divergence_shard + aggregate_divergences): {step:.1f} s; "
            f"materialize wall {wall:.1f} s; CPU seconds of this process {used:.1f}"
        )
        for key, seconds in sorted(steps.items(), key=lambda kv: -kv[1]):
            log(f"  step {key:44s} {seconds:7.1f} s")
        log(
            f"teacher forcing {meta['teacher_forcing_seconds']:.1f} s for {meta['teacher_forced_sequences']} "
            "sequences, "
            f"{meta['teacher_forced_tokens']} scored tokens; noise floor {meta['noise_floor_seconds']:.1f} s"
        )
        log(f"run's noise floor: JS {floor.get('js_abs_nats')} nats abs, {floor.get('js_rel')} relative")
        log("phases (inclusive wall seconds, calls):")
        for name, seconds in sorted(timers.seconds.items(), key=lambda kv: -kv[1]):
            log(f"  {name:48s} {seconds:7.1f} s  {timers.calls[name]:5d}")
    table = pd.read_csv(work / "data" / "outputs" / "divergence_per_response.csv")
    if args.save_values:
        table.to_csv(args.save_values, index=False)
        log(f"\nvalues saved to {args.save_values}")
    if args.compare:
        compare(table, Path(args.compare), floor)


if __name__ == "__main__":
    main()
