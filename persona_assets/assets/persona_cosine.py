import dagster as dg
import numpy as np

from persona_assets.assets.prompt_checks import refuse_unsafe_prompts, run_max_new_tokens
from persona_assets.config import CosineConfig
from persona_assets.measure.cosine import (
    CENTRING_RUN_MEAN,
    cosine_by_layer,
    default_layers,
    first_non_finite,
    persona_prompts,
)
from persona_assets.inputs.eval_set import EvalSet
from persona_assets.runs.progress import Heartbeat, ProgressReporter
from persona_assets.executor import MODEL_STEP_TAG
from persona_assets.run_config_validation import cosine_layers_problem, effective_run_config
from resources.llm import LLMResource


@dg.asset(group_name="model", kinds={"torch"}, code_version="1", op_tags=MODEL_STEP_TAG)
def persona_cosine(context: dg.AssetExecutionContext, config: CosineConfig, llm: LLMResource, eval_set: dict) -> dict:
    """Hidden-state cosine similarity between personas: the baseline JS/KL are compared with.

    Per persona, the hidden state of the last prompt token (after the generation prompt) at each
    chosen decoder layer, averaged over the eval questions; centred by the mean over the personas
    of this run; cosine between personas.
    """
    evals = EvalSet.from_dict(eval_set)
    # Before any weights: prompts that do not fit with the run's response length.
    refuse_unsafe_prompts(llm, evals, max_new_tokens=run_max_new_tokens(effective_run_config(context)))
    num_layers = llm.num_layers()  # from config.json: checked before the weights load
    layers = list(config.layers) or default_layers(num_layers)
    if (problem := cosine_layers_problem(layers, num_layers)) is not None:
        raise dg.Failure(f"run config ops.{context.op_def.name}.config.layers: {problem}")
    prompts = persona_prompts(llm, evals)
    with Heartbeat("hidden states", context.log.info):
        states = llm.last_prompt_hidden_states(
            prompts,
            layers,
            batch_size=config.batch_size,
            progress=ProgressReporter("hidden states", context.log.info, unit="prompts"),
        ).numpy()
    n_p, n_q = len(evals.personas), len(evals.questions)
    broken = first_non_finite(states)
    if broken is not None:
        prompt, layer = broken
        raise dg.Failure(
            f"hidden state of persona {evals.persona_names[prompt // n_q]!r}, question {prompt % n_q}, "
            f"layer {layers[layer]} is not finite (NaN/inf): the model's output is broken (weights, dtype overflow?)"
        )
    matrices = cosine_by_layer(states, n_p, n_q, layers)
    off_diagonal = ~np.eye(n_p, dtype=bool)
    context.add_output_metadata(
        {f"mean_cosine_{name}": float(m[off_diagonal].mean()) for name, m in matrices.items()} | {"layers": str(layers)}
    )
    return {
        "model": llm.describe(),
        "layers": layers,
        "num_model_layers": num_layers,
        "layer_convention": (
            "hidden_states[L]: output of decoder layer L (1-based), 0 = embeddings; the last layer's state is taken "
            "after the model's final norm (transformers applies it to the last hidden state)"
        ),
        "position": "last prompt token (end of the generation prompt)",
        "centring": CENTRING_RUN_MEAN,
        "persona_names": evals.persona_names,
        "n_questions": n_q,
        "cosine_matrices": {name: m.tolist() for name, m in matrices.items()},
    }
