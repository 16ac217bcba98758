from pathlib import Path

import dagster as dg

from persona_assets.config import EvalSetConfig
from persona_assets.runs.errors import InputError
from persona_assets.inputs.eval_set import build_eval_set
from persona_assets.run_config_validation import effective_run_config, validate_input_files, validate_run_config
from persona_assets.ui_metadata import NOTHING_EVALUATED, tag_run_settings_refused
from resources.llm import LLMResource


@dg.asset(group_name="inputs", kinds={"yaml"}, code_version="1")
def eval_set(context: dg.AssetExecutionContext, config: EvalSetConfig, llm: LLMResource) -> dict:
    """The personas (system prompts) and eval questions of this run, validated.

    Read from the editable YAML files under data/; a subset of personas and the first
    `n_questions` questions can be chosen in the run config. The settings of every step of the run
    are checked here, and so are the leakage and cosine-vs-leakage files it names and the model's
    files (config.json, the weights, every shard an index names; no weights read), so a bad one
    fails the run once, before any model step starts.
    """
    run_config = effective_run_config(context)
    try:
        validate_run_config(run_config, context.job_def)
        evals = build_eval_set(
            Path(config.personas_file),
            Path(config.questions_file),
            persona_subset=list(config.personas),
            n_questions=config.n_questions,
        )
        validate_input_files(run_config, evals.persona_names)
        llm.check_model_files()
    except InputError as exc:
        # The run says so where runs are listed: nothing was evaluated, whatever the asset badges show.
        tag_run_settings_refused(context)
        # A Failure shows the message itself in the UI and the CLI, first; `from None`: not twice.
        raise dg.Failure(f"{exc}\n{NOTHING_EVALUATED}") from None
    context.add_output_metadata(
        {
            "n_personas": len(evals.personas),
            "n_questions": len(evals.questions),
            "personas": ", ".join(evals.persona_names),
        }
    )
    return evals.to_dict()
