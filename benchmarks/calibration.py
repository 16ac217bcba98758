"""Benchmark: calibration of the tests by simulation (size under nulls, power under planted relations).

For each scenario of `persona_assets.stats.calibration` (null with persona effects for JS vs
cosine; nulls with source, target, and source + target effects for JS vs leakage; equal
predictors for the difference test; the question bootstrap's pair-JS CI), runs `--sims` seeded
simulations and prints every test's rejection rate with its Monte-Carlo SE. Under a null the
design-respecting tests should reject at about 5% (judged against 5% ± 2 Monte-Carlo SEs of a test
that rejects at exactly 5%); the older tests that assume
independent pairs are printed too, for comparison. Prints the hardware and the settings.

With ``--designs N`` it then runs N simulations of each verdict design of
`persona_assets.analysis.calibration_designs`: how often each interval a verdict or headline uses misses
the truth, how often each gate is "decided by the data" on the wrong side near its threshold, and
the tests' and persona-bootstrap CIs' rejections under leakage nulls with dual-role personas.

    nice -n 10 python benchmarks/calibration.py | tee benchmarks/results/calibration_<machine>.txt
    nohup nice python benchmarks/calibration.py --skip-tests --designs 250 \\
        > benchmarks/results/calibration_verdicts_<machine>.txt &
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.hardware import cpu_model  # noqa: E402


def judge(kind: str, rate: float, se_at_alpha: float, alpha: float) -> str:
    """Size against alpha ± 2 Monte-Carlo SEs of a test that rejects at exactly alpha."""
    if kind == "power":
        return "power"
    if rate > alpha + 2 * se_at_alpha:
        return "LIBERAL (above 5% + 2 SE)"
    if rate < alpha - 2 * se_at_alpha:
        return "conservative (below 5% − 2 SE)"
    return "holds 5% (within 2 SE)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sims", type=int, default=2000, help="simulations per scenario (≥ 500 for the committed output)"
    )
    parser.add_argument("--perms", type=int, default=199, help="permutations per test")
    parser.add_argument("--boots", type=int, default=199, help="bootstrap resamples per CI")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default="", help="run only the scenarios whose name contains this")
    parser.add_argument(
        "--designs",
        type=int,
        default=0,
        help="simulations per scenario of the verdict designs (calibration_designs; 0: skip them)",
    )
    parser.add_argument("--skip-tests", action="store_true", help="skip the size/power scenarios of the tests")
    parser.add_argument(
        "--skip-question-designs", type=int, default=0, help="start the verdict designs at this question design"
    )
    args = parser.parse_args()

    import numpy as np
    import scipy

    from persona_assets.stats import calibration as cal

    settings = cal.Settings(n_perm=args.perms, n_boot=args.boots)
    print(f"hardware: {cpu_model()}; {os.cpu_count()} CPUs visible; {platform.platform()}")
    print(f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}")
    if not args.skip_tests:
        print(f"settings: {args.sims} simulations per scenario, seed {args.seed}, {asdict(settings)}")
        print(
            f"alpha = {cal.ALPHA}; Monte-Carlo SE of a rate p over {args.sims} simulations = sqrt(p(1 − "
            f"p)/{args.sims}) "
            f"(at 5%: {cal.monte_carlo_se(cal.ALPHA, args.sims):.4f})"
        )
    started = time.monotonic()
    for k, (name, (kind, trial)) in enumerate({} if args.skip_tests else cal.scenarios(settings).items()):
        if args.only and args.only not in name:
            continue
        t0 = time.monotonic()
        rates = cal.rejection_rates(trial, args.sims, args.seed + 1000 * k)
        print(
            f"\n{name}  [{'size under the null' if kind == 'size' else 'power against a planted relation'}; "
            f"{time.monotonic() - t0:.1f} s]"
        )
        for test, rate in rates.items():
            se = cal.monte_carlo_se(rate, args.sims)
            print(
                f"  {test:55s} {rate:6.3f} ± {se:.3f}   "
                f"{judge(kind, rate, cal.monte_carlo_se(cal.ALPHA, args.sims), cal.ALPHA)}"
            )
    if args.designs:
        designs(args.designs, args.seed, args.skip_question_designs)
    print(f"\ntotal {time.monotonic() - started:.0f} s")


def designs(n_sims: int, seed: int, skip: int = 0) -> None:
    """Coverage of the verdicts' intervals and wrong-side rates of the gates (calibration_designs)."""
    from persona_assets.analysis import calibration_designs as cd

    se5, se25 = cd.math.sqrt(0.05 * 0.95 / n_sims), cd.math.sqrt(0.025 * 0.975 / n_sims)
    print(
        f"\n== verdict designs: {n_sims} simulations each; MC s.e. at 5%: {se5:.4f}, at 2.5%: {se25:.4f}; "
        "goals: interval miss / test rejection <= 6%, gate decided on the wrong side <= 2.5% =="
    )
    for k, d in enumerate(cd.question_designs()):
        if k < skip:
            continue
        for name, (values, cosine, thresholds) in cd.gate_scenarios(d).items():
            t0 = time.monotonic()
            rates = cd.rates(lambda g: cd.question_trial(g, d, values, cosine, **thresholds), n_sims, seed + 7919 * k)
            print(
                f"\n{d.name}; {name}  [{d.n_questions} questions, {d.n_boot} resamples; {time.monotonic() - t0:.1f} s]"
            )
            for test, rate in rates.items():
                print(f"  {test:48s} {rate:6.3f} ± {cd.math.sqrt(rate * (1 - rate) / n_sims):.3f}")
    for k, d in enumerate(cd.leakage_designs()):
        t0 = time.monotonic()
        rates = cd.rates(lambda g: cd.leakage_null_trial(g, d), n_sims, seed + 104729 * k)
        print(
            f"\nleakage null: {d.name}  [{d.n_perm} permutations, {d.n_boot} resamples; {time.monotonic() - t0:.1f} s]"
        )
        for test, rate in rates.items():
            print(f"  {test:48s} {rate:6.3f} ± {cd.math.sqrt(rate * (1 - rate) / n_sims):.3f}")


if __name__ == "__main__":
    main()
