"""Validate a whole run's config up front, so a bad setting fails the run's first step.

Dagster builds an asset's config object (and so applies the ranges in persona_assets/config.py)
only when that asset's step starts: a bad `n_bootstrap` would surface after the model steps have
run for hours. The model steps and `eval_set` therefore check the settings of every step of the
run first, against the config class each asset of the running job declares (read from the job,
never from a list kept by hand); the model steps also check the cosine layers against the
model's depth, read from its config.json (no weights).
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import ValidationError

from persona_assets import config as run_configs
from persona_assets.runs.errors import InputError, quoted


def _config_class_of_op(op_def: dg.OpDefinition) -> type[dg.Config] | None:
    """The dg.Config class an op's function takes (Dagster builds it from run config at step start)."""
    compute_fn = getattr(op_def, "compute_fn", None)
    fn = getattr(compute_fn, "decorated_fn", None)
    if fn is None:
        return None
    hints = typing.get_type_hints(fn)
    found = [
        hint
        for hint in hints.values()
        if isinstance(hint, type)
        and issubclass(hint, dg.Config)
        and not issubclass(hint, (dg.ConfigurableResource, dg.ConfigurableIOManager))  # resources are Configs too
    ]
    return found[0] if found else None


def _config_class_of_node(node_def: dg.NodeDefinition) -> type[dg.Config] | None:
    if isinstance(node_def, dg.GraphDefinition):
        # A graph asset configured as one (a config mapping hands one set of settings to its ops):
        # the settings are those of its ops, which must all take the same class.
        inner = {_config_class_of_node(node.definition) for node in node_def.nodes} - {None}
        return inner.pop() if len(inner) == 1 else None
    return _config_class_of_op(node_def)


def config_classes(job_def: dg.JobDefinition) -> dict[str, type[dg.Config]]:
    """Top-level node (op) name → the config class its settings go to, read from the job itself.

    Derived from the assets' own signatures, so a new asset or setting is validated without
    being listed anywhere. The caller passes the job (an asset's `context.job_def`; elsewhere
    `defs.resolve_implicit_global_asset_job_def()`), so this module never imports the definitions
    that import it.
    """
    return config_classes_of_nodes(node.definition for node in job_def.graph.nodes)


def config_classes_of_nodes(node_defs: Iterable[dg.NodeDefinition]) -> dict[str, type[dg.Config]]:
    """Node (op or graph) name → its config class, for the nodes that take one (see `config_classes`)."""
    classes = {}
    for node_def in node_defs:
        config_class = _config_class_of_node(node_def)
        if config_class is not None:
            classes[node_def.name] = config_class
    return classes


def effective_run_config(context: dg.AssetExecutionContext) -> Mapping[str, Any]:
    """The run config the steps of this run were given: the launched config after the job's config mapping.

    A scenario job (persona_assets.jobs) fills what the launch left out from its scenario file, so the
    launched config alone may lack settings the steps run with.
    """
    mapping = context.job_def.config_mapping
    run_config = context.run.run_config
    return mapping.resolve_from_unvalidated_config(run_config) if mapping is not None else run_config


def cosine_layers_problem(layers: Sequence[int], num_layers: int) -> str | None:
    """Why `layers` cannot be read from a model with `num_layers` decoder layers (None when they can)."""
    beyond = [layer for layer in layers if not 0 <= layer <= num_layers]
    if not beyond:
        return None
    return (
        f"layer index {', '.join(map(str, beyond))} is beyond the model's depth: valid range 0..{num_layers} "
        f"(the model has {num_layers} hidden layers; 0 = embeddings, L = output of decoder layer L)"
    )


def _describe(op_name: str, config_class: type[dg.Config], error: Mapping[str, Any]) -> str:
    field = ".".join(str(part) for part in error["loc"])
    info = config_class.model_fields.get(str(error["loc"][0])) if error["loc"] else None
    hint = f" [{info.description}]" if info is not None and info.description else ""
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"ops.{op_name}.config.{field}: {message} (got {quoted(error.get('input'))}){hint}"


def run_config_problems(
    run_config: Mapping[str, Any],
    job_def: dg.JobDefinition | None = None,
    *,
    model_layers: int | None = None,
    classes: Mapping[str, type[dg.Config]] | None = None,
) -> list[str]:
    """Every setting of the run outside its allowed range, one line each naming the op and field.

    The config classes are read from `job_def`, or given as `classes` (node name → class).
    """
    problems: list[str] = []
    classes = config_classes(job_def) if classes is None else classes
    for op_name, op_config in (run_config.get("ops") or {}).items():
        config_class = classes.get(op_name)
        if config_class is None or not isinstance(op_config, Mapping):
            continue
        try:
            parsed = config_class(**(op_config.get("config") or {}))
        except ValidationError as error:
            problems.extend(_describe(op_name, config_class, e) for e in error.errors())
            continue
        if model_layers is not None and isinstance(parsed, run_configs.CosineConfig):
            if (problem := cosine_layers_problem(parsed.layers, model_layers)) is not None:
                problems.append(f"ops.{op_name}.config.layers: {problem}")
    return problems


def validate_run_config(
    run_config: Mapping[str, Any], job_def: dg.JobDefinition, *, model_layers: int | None = None
) -> None:
    """Raise InputError listing every bad setting of the run (see `run_config_problems`)."""
    problems = run_config_problems(run_config, job_def, model_layers=model_layers)
    if problems:
        raise InputError("invalid run config; fix these settings and re-run:\n- " + "\n- ".join(problems))


def input_file_problems(run_config: Mapping[str, Any], persona_names: Sequence[str]) -> list[str]:
    """Every configured leakage or cosine-vs-leakage file that cannot be used, one line each.

    The files are read and validated here (cheap, CPU) so that a typo in a path or a broken file
    fails the run's first step, not the analysis after hours of model work. A leakage table must
    also share at least one pair with the run's personas.
    """
    from persona_assets.inputs.leakage import load_leakage, restrict_to_personas
    from persona_assets.inputs.formats import load_cosine_leakage_file

    problems: list[str] = []
    for op_name, op_config in (run_config.get("ops") or {}).items():
        settings = (op_config.get("config") or {}) if isinstance(op_config, Mapping) else {}
        try:
            if op_name == "leakage_rates" and settings.get("leakage_path"):
                path = Path(settings["leakage_path"])
                restrict_to_personas(load_leakage(path), persona_names, path)
            # Also legacy_cosine_precheck, the re-analysis's copy, which reads the same kind of file.
            elif op_name.endswith("cosine_precheck") and settings.get("cosine_leakage_file"):
                load_cosine_leakage_file(Path(settings["cosine_leakage_file"]))
        except InputError as exc:
            problems.append(f"ops.{op_name}.config: {exc}")
    return problems


def validate_input_files(run_config: Mapping[str, Any], persona_names: Sequence[str]) -> None:
    """Raise InputError listing every unusable input file of the run (see `input_file_problems`)."""
    problems = input_file_problems(run_config, persona_names)
    if problems:
        raise InputError("unusable input file(s); fix and re-run:\n- " + "\n- ".join(problems))
