"""Benchmark: `make job`'s divergence step on the CPU, with and without shared prefixes.

The shape of configs/demo.yaml (its personas, n_questions and max_new_tokens) on the real embedded
model (SmolLM2-135M-Instruct, float32), through the real assets and resource: eval_set and
generations are materialized once, then `divergence_matrices` alone, once per setting of
`CpuLLM.shared_prefixes` (in `--order`), each time with an empty divergence cache. Prints per
run the step's wall time (model load, scoring, aggregation and the noise-floor re-scoring
included), its scoring seconds and teacher-forced tokens (the step's own metadata), the CPU
seconds the process used, the load average before and after (the machine may be shared), the
run's noise floor, and the largest difference of a response-mean JS / KL between the settings.

    nice -n 10 python benchmarks/cpu_shared_prefixes.py | tee benchmarks/results/cpu_shared_prefixes_<machine>.txt
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def log(msg: str = "") -> None:
    print(msg, flush=True)


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def demo_ops(args) -> dict:
    import yaml

    ops = yaml.safe_load((REPO / args.config).read_text())["ops"]
    if args.n_questions:
        ops["eval_set"]["config"]["n_questions"] = args.n_questions
    if args.max_new_tokens:
        ops["generations"]["config"]["max_new_tokens"] = args.max_new_tokens
    if args.personas:
        ops["eval_set"]["config"]["personas"] = args.personas.split(",")
    return ops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--order", default="unshared,shared", help="runs of the divergence step, in order")
    parser.add_argument("--n-questions", type=int, default=0, help="override the config (0: keep)")
    parser.add_argument("--max-new-tokens", type=int, default=0, help="override the config (0: keep)")
    parser.add_argument("--personas", default="", help="comma list overriding the config's personas (smoke tests)")
    args = parser.parse_args()

    import dagster as dg
    import pandas as pd
    import torch
    import transformers

    from persona_assets.assets.divergence_matrices import divergence_matrices
    from persona_assets.assets.eval_set import eval_set
    from persona_assets.assets.generations import generations
    from persona_assets.io_manager import JsonIOManager
    from resources.llm import CpuLLM

    cpu = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
        platform.processor(),
    )
    log("== hardware and versions")
    log(
        f"cpu: {cpu}; {os.cpu_count()} logical cores; torch threads {torch.get_num_threads()}; "
        f"niceness {os.nice(0)}; load average at start {load_average()}"
    )
    log(f"python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}")
    ops = demo_ops(args)
    log(f"config: {args.config} -> {ops}")

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PERSONA_DATA_DIR"] = str(Path(tmp) / "data")
        os.environ["PERSONA_FIGURES_DIR"] = str(Path(tmp) / "figures")
        upstream_ops = {k: ops[k] for k in ("eval_set", "generations") if k in ops}
        started = time.perf_counter()
        upstream = dg.materialize(
            [eval_set, generations],
            resources={"llm": CpuLLM(), "io_manager": JsonIOManager()},
            run_config=dg.RunConfig(ops=upstream_ops),
        )
        assert upstream.success
        responses = upstream.output_for_node("generations")["responses"]
        n_tokens = [r["n_tokens"] for r in responses]
        log(
            f"\nupstream (eval_set + generations): {time.perf_counter() - started:.1f} s; {len(responses)} responses, "
            f"{sum(n_tokens)} tokens ({min(n_tokens)}..{max(n_tokens)} per response)"
        )

        tables = {}
        for name in args.order.split(","):
            shutil.rmtree(Path(tmp) / "data" / "cache" / "divergences", ignore_errors=True)
            llm = CpuLLM(shared_prefixes=name == "shared")
            load_before, cpu_before = load_average(), cpu_seconds()
            started = time.perf_counter()
            result = dg.materialize(
                [divergence_matrices, eval_set.to_source_asset(), generations.to_source_asset()],
                resources={"llm": llm, "io_manager": JsonIOManager()},
                run_config=dg.RunConfig(ops={k: v for k, v in ops.items() if k == "divergence_matrices"}),
                selection=[divergence_matrices.key],
            )
            wall = time.perf_counter() - started
            used = cpu_seconds() - cpu_before
            assert result.success
            meta = {
                k: v.value for k, v in result.asset_materializations_for_node("divergence_matrices")[0].metadata.items()
            }
            floor = meta["noise_floor"]
            tables[name] = pd.read_csv(Path(tmp) / "data" / "outputs" / "divergence_per_response.csv")
            log(f"\n== divergence step, {name} (CpuLLM.shared_prefixes={name == 'shared'})")
            log(
                f"step wall time {wall:.1f} s (model load, scoring, aggregation, noise floor); "
                f"scoring {meta['seconds']:.1f} s; CPU time of this process {used:.1f} s"
            )
            log(
                f"teacher-forced sequences {meta['teacher_forced_sequences']}, scored response tokens "
                f"{meta['teacher_forced_tokens']}; noise floor {meta['noise_floor_seconds']:.1f} s"
            )
            log(f"run's noise floor: JS {floor.get('js_abs_nats')} nats abs, {floor.get('js_rel')} relative")
            log(f"load average before {load_before}, after {load_average()} (1, 5, 15 min)")

        if len(tables) > 1:
            names = list(tables)
            keys = ["generator", "question_index", "persona_a", "persona_b"]
            base = tables[names[0]].set_index(keys).sort_index()
            log("\n== values")
            for other in names[1:]:
                table = tables[other].set_index(keys).sort_index()
                for column in ("js", "kl_ab", "kl_ba"):
                    a, b = table[column].to_numpy(), base[column].to_numpy()
                    rel = abs(a - b) / abs(b)
                    log(
                        f"{other} vs {names[0]}: response-mean {column}: max abs difference {abs(a - b).max():.2e} "
                        "nats, "
                        f"max relative {rel.max():.2e}, bit-identical {int((a == b).sum())}/{len(a)} rows"
                    )


if __name__ == "__main__":
    main()
