"""What the user gives and its checks: the eval set, leakage rates, prompt safety, response quality, and
readers of other people's files (`formats`).

What a newcomer changes here: a new input file, a new check of bad input (each names the file and the problem).
Names are imported lazily: `from persona_assets.inputs import build_eval_set`. No dagster import.
A function named like its module is imported from the module itself (the package attribute is the module).
"""

from persona_assets.lazy_exports import lazy_getattr

_EXPORTS = {
    # eval_set
    "EvalSet": "eval_set",
    "build_eval_set": "eval_set",
    # leakage
    "load_leakage": "leakage",
    "load_marker_eval_dir": "leakage",
    "restrict_to_personas": "leakage",
    # prompt_safety
    "PromptSafetyError": "prompt_safety",
    "check_prompts": "prompt_safety",
    "context_window": "prompt_safety",
}
__all__ = list(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
