"""Print what a run found: `python -m persona_assets.summary` (the last step of `make job`).

Two parts, each when its outputs exist: this run (the model's kill-gate verdicts) and the
re-analysis of earlier results (the `legacy` group: by default the published study bundled in
data/reference_study), with its verdicts and its leakage correlations. It ends with the few
numbers to read first and the paths of the two figures to open first.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from persona_assets.stats.difference_power import power_text
from persona_assets.inputs.response_quality import response_quality
from persona_assets.environment import data_dir_for_scripts

LEGACY_PREFIX = "legacy_"
PERSONA_CI_LABEL = "liberal under dual-role persona effects: see crossed_bootstrap.calibration"


def _read(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _interval_text(ci) -> str:
    return f"[{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci and None not in ci else "undefined"


def _rho(stats: dict[str, Any], *, interval: bool = False) -> str:
    """ρ with its design-respecting test, the persona-permutation p (calibrated: 4–6% rejections under every
    simulated null). No interval in a headline: none of the intervals of ρ holds 95% under the simulated
    designs (`PERSONA_CI_LABEL`); with ``interval`` the persona-bootstrap CI follows, labelled liberal.
    The source-cluster CI (`spearman_ci95`, 17–45% rejections under true nulls) is never printed here.
    """
    perm = stats.get("persona_permutation") or {}
    p = perm.get("spearman_p")
    text = f"Spearman ρ = {stats['spearman_rho']:+.2f}, permutation p = " + (
        f"{p:.2g}" if p is not None else "undefined"
    )
    if interval:
        ci = (stats.get("crossed_bootstrap") or {}).get("spearman_ci95")
        text += f", persona-bootstrap 95% CI {_interval_text(ci)} ({PERSONA_CI_LABEL})"
    return f"{text} (n = {stats['n']})"


def _evidence(name: str, evidence: dict[str, Any]) -> str:
    if name == "discrimination":
        return f"pair JS std {evidence['js_std']:.3g} nats, max/min {evidence['max_min_ratio']:.3g}"
    if evidence.get("max_abs_rho") is None:
        return "no cosine to compare with"
    over = evidence.get("layers_over_threshold") or []
    return f"max |ρ(JS, cosine)| {evidence['max_abs_rho']:.2f}" + (
        f", over the threshold at {', '.join(over)}" if over else ""
    )


def _state(verdict: dict[str, Any]) -> str:
    """KILLED / passed, with whether the data decide it (its CIs wholly on the verdict's side) when known."""
    state = "KILLED" if verdict["killed"] else "passed"
    return f"{state} ({verdict['call']})" if verdict.get("call") else state


def verdict_lines(verdicts: dict[str, Any]) -> list[str]:
    lines = []
    for name in ("discrimination", "redundancy"):
        verdict = verdicts[name]
        lines.append(
            f"kill gate {name}: {_state(verdict)} — {verdict['rule']} ({_evidence(name, verdict['evidence'])})"
        )
        lines.extend(f"    note: {note}" for note in verdict["notes"])
    return lines


def strongest_cosine(leakage: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The cosine set/layer that predicts leakage best on the same pairs as JS (the fairest rival)."""
    candidates = [
        (f"{set_name}/{layer}", stats)
        for set_name, layers in leakage.get("cosine_vs_leakage_same_pairs", {}).items()
        for layer, stats in layers.items()
        if isinstance(stats, dict) and stats.get("spearman_rho") is not None
    ]
    return max(candidates, key=lambda c: abs(c[1]["spearman_rho"])) if candidates else None


def _predictor_test(leakage: dict[str, Any], cosine_key: str) -> dict[str, Any] | None:
    set_name, layer = cosine_key.split("/")
    return leakage.get("js_vs_cosine_as_predictors", {}).get(set_name, {}).get(layer)


def _not_significant(p: float, power: dict[str, Any] | None) -> str:
    """'' for p < 0.05; else the words 'no significant difference' with the power the test had at this design."""
    if p < 0.05:
        return ""
    return f" → no significant difference; {power_text(power) if power else 'power not simulated'}"


def leakage_lines(correlations: dict[str, Any]) -> list[str]:
    """JS vs leakage, cosine vs leakage on the same directed pairs, and the JS-vs-cosine test."""
    leakage = correlations.get("leakage", {})
    if not leakage.get("available"):
        return [f"leakage: not available{' — ' + leakage['note'] if leakage.get('note') else ''}"]
    lines = [
        f"leakage: {leakage['n_directed_pairs']} directed pairs from {leakage['n_sources']} source personas "
        f"({leakage['source_of_rates']}); p: persona labels permuted within roles (calibrated); CI: personas "
        "resampled, one draw for both roles (liberal)"
    ]
    primary_first = sorted(leakage.get("by_averaging") or {}, key=lambda a: a != leakage.get("averaging"))
    sections = {a: leakage["by_averaging"][a] for a in primary_first} or {leakage.get("averaging", "pair_own"): leakage}
    for averaging, section in sections.items():
        primary = " (primary)" if averaging == leakage.get("averaging") else ""
        lines.append(f"  JS vs leakage, {averaging}{primary}: {_rho(section['js_vs_leakage'], interval=True)}")
    main = sections.get(leakage.get("averaging"), leakage)
    for set_name, layers in main.get("cosine_vs_leakage_same_pairs", {}).items():
        lines.append(f"  cosine vs leakage, same pairs, {set_name} (centred by {layers.get('centring', '?')}):")
        lines.extend(
            f"      {layer}: {_rho(stats, interval=True)}" for layer, stats in layers.items() if isinstance(stats, dict)
        )
    lines.append(
        "  JS vs cosine as leakage predictors (difference of Spearman ρ, > 0: JS predicts more strongly; "
        "p: permutation respecting the sources × targets design; Steiger p assumes independent pairs):"
    )
    powers = leakage.get("difference_power_by_cosine") or {}
    for set_name, layers in main.get("js_vs_cosine_as_predictors", {}).items():
        for layer, test in layers.items():
            if not isinstance(test, dict):
                continue
            perm = test.get("permutation_difference") or {}
            steiger = test.get("steiger") or {}
            if perm.get("difference") is not None:
                lines.append(
                    f"      {set_name}/{layer}: difference {perm['difference']:+.2f}, permutation p = "
                    f"{perm['p_two_sided']:.3g}"
                    + (f" (Steiger p = {steiger['p_two_sided']:.3g})" if steiger.get("p_two_sided") is not None else "")
                    + _not_significant(perm["p_two_sided"], powers.get(f"{set_name}/{layer}"))
                )
    return lines


def headline_leakage(correlations: dict[str, Any] | None, label: str) -> list[str]:
    """The three numbers that answer the project's question on one set of results."""
    leakage = (correlations or {}).get("leakage", {})
    if not leakage.get("available"):
        return []
    main = (leakage.get("by_averaging") or {}).get(leakage.get("averaging"), leakage)
    lines = [f"{label}: JS vs leakage {_rho(main['js_vs_leakage'])} ({leakage.get('averaging', 'pair_own')})"]
    rival = strongest_cosine(main)
    if rival is None:
        return lines
    key, stats = rival
    lines.append(f"{label}: best cosine vs leakage, same pairs ({key}) {_rho(stats)}")
    test = _predictor_test(main, key) or {}
    perm = test.get("permutation_difference") or {}
    if perm.get("difference") is not None:
        d, p = perm["difference"], perm["p_two_sided"]
        if p < 0.05:
            reading = "JS predicts leakage better" if d > 0 else "cosine predicts leakage better"
        else:
            reading = "no significant difference between JS and cosine"
        power = leakage.get("difference_power") or {}
        if power.get("cosine") != key:
            power = (leakage.get("difference_power_by_cosine") or {}).get(key) or {}
        power_clause = f"; {power_text(power)}" if power.get("cosine") == key else "; power not simulated for this pair"
        lines.append(
            f"{label}: JS vs that cosine as predictor: difference of ρ {d:+.2f}, permutation p = {p:.2g} → {reading} "
            f"({perm.get('n_permutations', '?')} permutations respecting the sources × targets design{power_clause})"
        )
    return lines


def headline_verdicts(verdicts: dict[str, Any] | None, label: str) -> list[str]:
    if verdicts is None:
        return []
    evidence = verdicts["discrimination"]["evidence"]
    redundancy = verdicts["redundancy"]["evidence"]
    rho = (
        f", max |ρ(JS, cosine)| = {redundancy['max_abs_rho']:.2f}" if redundancy.get("max_abs_rho") is not None else ""
    )
    gates = ", ".join(f"{n} {_state(verdicts[n])}" for n in ("discrimination", "redundancy"))
    return [
        f"{label}: pair JS {evidence['js_min']:.3g}–{evidence['js_max']:.3g} nats (std {evidence['js_std']:.3g}){rho}; "
        f"kill gates: {gates}"
    ]


def headline_baseline(outputs: Path) -> list[str]:
    """The within-persona baseline's line to read first, for the study and this run (where each has run)."""
    lines = []
    study = _read(outputs / f"{LEGACY_PREFIX}kill_gate_verdicts.json")
    if study is not None and "discrimination" in study:
        within = study["discrimination"]["evidence"].get("within_persona_baseline") or {}
        if not within.get("measured"):
            lines.append(f"study: no within-persona baseline — {within.get('reason', 'none recorded')}")
    baseline = _read(outputs / "persona_baseline.json")
    if baseline is not None:
        lines.append(f"this run: {'within-persona baseline: ' if baseline['measured'] else ''}{baseline['read_first']}")
    return lines


def run_lines(outputs: Path) -> list[str]:
    """This run's model, responses and kill-gate verdicts (empty when it has not run)."""
    verdicts = _read(outputs / "kill_gate_verdicts.json")
    divergences = _read(outputs / "divergence_matrices.json")
    if verdicts is None or divergences is None:
        return []
    model = divergences["model"]
    lines = [
        f"== this run: {model['model_name']} ({model['dtype']}, {model['device']}) ==",
        f"personas: {len(divergences['persona_names'])}, questions: {divergences['n_questions']}, "
        f"averaging: {divergences['method']['averaging']}",
    ]
    if (generations := _read(outputs / "generations.json")) is not None:
        quality = response_quality(generations["responses"])
        lines.append(
            f"responses: {quality['n_responses']}, empty: {quality['n_empty']}, "
            f"stopped at max_new_tokens: {quality['hit_max_new_tokens']} ({quality['hit_max_new_tokens_share']:.0%})"
        )
    lines.extend(verdict_lines(verdicts))
    if (correlations := _read(outputs / "leakage_correlations.json")) is not None:
        lines.extend(leakage_lines(correlations))
    return lines


def study_lines(outputs: Path) -> list[str]:
    """The re-analysis of earlier results (empty when the legacy group has not run)."""
    results = _read(outputs / "legacy_results.json")
    verdicts = _read(outputs / f"{LEGACY_PREFIX}kill_gate_verdicts.json")
    if results is None:
        return []
    if not results.get("available", True) or verdicts is None:
        return [
            "== earlier results (legacy) ==",
            f"not available: {results.get('note', 'the legacy group did not finish')}",
        ]
    folder = results.get("provenance", {}).get("folder", "?")
    lines = [f"== earlier results re-analysed: {verdicts.get('model', '?')} ({folder}) =="]
    lines.extend(verdict_lines(verdicts))
    if (correlations := _read(outputs / f"{LEGACY_PREFIX}leakage_correlations.json")) is not None:
        lines.extend(leakage_lines(correlations))
    return lines


def per_token_lines(outputs: Path) -> list[str]:
    """The per-token pass's lines to read first (logit lens, position profile); for the re-analysed study, that it
    has no per-token data."""
    from persona_assets.analysis.depth_report import depth_headline, profile_headline

    lines = []
    if (legacy := _read(outputs / "legacy_results.json")) is not None:
        folder = legacy.get("provenance", {}).get("folder", "the earlier results")
        lines.append(
            f"study: no per-token data in {folder} (pair matrices only): logit lens and position profiles not available"
        )
    if (lens := _read(outputs / "layer_divergences.json")) is not None:
        lines.append(f"this run, through depth: {depth_headline(lens)}")
    if (profiles := _read(outputs / "divergence_profiles.json")) is not None:
        lines.append(f"this run, by response position: {profile_headline(profiles)}")
    return lines


def first_numbers(outputs: Path, figures: Path) -> list[str]:
    """The few numbers to read first, and the two figures to open first."""
    lines = ["== read first =="]
    lines += headline_leakage(_read(outputs / f"{LEGACY_PREFIX}leakage_correlations.json"), "study")
    lines += headline_leakage(_read(outputs / "leakage_correlations.json"), "this run")
    lines += headline_verdicts(_read(outputs / f"{LEGACY_PREFIX}kill_gate_verdicts.json"), "study")
    lines += headline_verdicts(_read(outputs / "kill_gate_verdicts.json"), "this run")
    lines += per_token_lines(outputs)
    lines += headline_baseline(outputs)
    for label, path in (
        ("this run's JS heatmap", figures / "js_heatmap.png"),
        ("study's hero figure", figures / "legacy" / "js_vs_leakage.png"),
    ):
        lines.append(f"{label}: {path}" if path.is_file() else f"{label}: not drawn ({path} is absent)")
    return lines


def summary_lines(outputs: Path, figures: Path) -> list[str]:
    run, study = run_lines(outputs), study_lines(outputs)
    if not run and not study:
        return []
    return [
        *run,
        *([""] if run else []),
        *study,
        *([""] if study else []),
        f"results (JSON/CSV): {outputs}",
        f"figures (PNG/HTML): {figures}",
        "",
        *first_numbers(outputs, figures),
    ]


def main() -> int:
    data_dir, figures_dir = (Path(p).resolve() for p in data_dir_for_scripts())
    lines = summary_lines(data_dir / "outputs", figures_dir)
    if not lines:
        print(f"no results yet under {data_dir / 'outputs'}: run the job first", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
