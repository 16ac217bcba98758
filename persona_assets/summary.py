"""Print where a run's results are and what the kill gates said: `python -m persona_assets.summary`."""

from __future__ import annotations

import json
import sys

from persona_assets.core.response_quality import response_quality
from pathlib import Path

from persona_assets.environment import data_dir_for_scripts


def main() -> int:
    data_dir, figures_dir = (Path(p).resolve() for p in data_dir_for_scripts())
    outputs = data_dir / "outputs"
    verdicts_path = outputs / "kill_gate_verdicts.json"
    if not verdicts_path.is_file():
        print(f"no results yet under {outputs}: run the job first", file=sys.stderr)
        return 1
    verdicts = json.loads(verdicts_path.read_text())
    divergences = json.loads((outputs / "divergence_matrices.json").read_text())
    print(f"model: {divergences['model']['model_name']} ({divergences['model']['dtype']}, {divergences['model']['device']})")
    print(f"personas: {len(divergences['persona_names'])}, questions: {divergences['n_questions']}, averaging: {divergences['method']['averaging']}")
    generations_path = outputs / "generations.json"
    if generations_path.is_file():
        quality = response_quality(json.loads(generations_path.read_text())["responses"])
        print(
            f"responses: {quality['n_responses']}, empty: {quality['n_empty']}, "
            f"stopped at max_new_tokens: {quality['hit_max_new_tokens']} ({quality['hit_max_new_tokens_share']:.0%})"
        )
    for name in ("discrimination", "redundancy"):
        verdict = verdicts[name]
        print(f"kill gate {name}: {'KILLED' if verdict['killed'] else 'passed'} — {verdict['rule']}")
        for note in verdict["notes"]:
            print(f"    note: {note}")
    print(f"results (JSON/CSV): {outputs}")
    print(f"figures (PNG/HTML): {figures_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
