"""The stages of ``mede2 run``: what each reads, what it calls, what it writes.

Each stage is a :class:`Stage`: ``inputs(ctx)`` (files, settings, templates: the fingerprint),
``owned(ctx)`` (the outputs moved aside before it is redone), ``models(ctx)`` (roles it calls,
for the manifest) and ``run(ctx, decision)``, which calls the stage packages' Python APIs
(``mede2_plugin.curate``, ``.distill``, ``.mmrp``, ``.evaluate``) and, for training,
``llamafactory-cli``. Every stage writes under ``<output_dir>``::

    models/m0/                tiny base model (demo: models.build_tiny)
    curate/<bank>/            curation of each bank;  curate/stage1_questions.jsonl (text),
                              curate/stage2_questions.jsonl (images)
    distill/                  teacher traces, filter;  distill/data/ = the Stage-I dataset
    train/                    the effective llamafactory-cli recipes;  logs/ their output
    models/stage1_adapter/, models/m1/, models/m2/
    rollout/rollouts.jsonl    judge/judged.jsonl    pairs/ = the Stage-II dataset
    eval/<M0|M1|M2>/<benchmark>/    report/report.{md,csv}, report/report_scaling.{csv,png}
    cache/                    response caches (API roles; local models by weight hash)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mede2_plugin.client.config import BackendConfig
from mede2_plugin.pipeline.config import PipelineConfig, iter_role_backends
from mede2_plugin.pipeline.stages.base import (
    LAYOUT,
    Context,
    Layout,
    StageError,
    StageResult,
    declared,
    templates_in,
)
from mede2_plugin.pipeline.stages.curation import (
    curate_inputs,
    curate_models,
    curate_run,
    curate_settings,
    distill_inputs,
    distill_models,
    distill_run,
    distill_settings,
)
from mede2_plugin.pipeline.stages.evaluation import (
    evaluate_inputs,
    evaluate_models,
    evaluate_run,
    report_inputs,
    report_run,
)
from mede2_plugin.pipeline.stages.preference import (
    judge_inputs,
    judge_models,
    judge_run,
    pairs_inputs,
    pairs_run,
    rollout_inputs,
    rollout_models,
    rollout_run,
)
from mede2_plugin.pipeline.stages.training import (
    prepare_inputs,
    prepare_run,
    train_stage1_inputs,
    train_stage1_run,
    train_stage2_inputs,
    train_stage2_run,
)
from mede2_plugin.pipeline.state import StageInputs


def _no_models(ctx: Context) -> list[dict[str, Any]]:
    return []


@dataclass
class Stage:
    """One stage of the pipeline (see the module docstring)."""

    name: str
    title: str
    inputs: Callable[[Context], StageInputs]
    owned: Callable[[Context], list[Path]]
    run: Callable[[Context, str], StageResult]
    models: Callable[[Context], list[dict[str, Any]]] = _no_models


PREPARE = Stage("prepare", "base model", prepare_inputs, lambda c: [c.layout.m0] if c.config.models.build_tiny else [],
                prepare_run)
STAGES: list[Stage] = [
    Stage("curate", "curation: difficulty filter, classifier, caption stripping, leakage", curate_inputs,
          lambda c: [c.layout.curate], curate_run, curate_models),
    Stage("distill", "Stage-I data: teacher traces, trace filter, SFT dataset", distill_inputs,
          lambda c: [c.layout.distill], distill_run, distill_models),
    Stage("train_stage1", "Stage-I training: LoRA SFT, merge -> M1", train_stage1_inputs,
          lambda c: [c.layout.stage1_adapter, c.layout.m1, c.layout.train / "stage1_train.yaml",
                     c.layout.train / "stage1_merge.yaml"], train_stage1_run),
    Stage("rollout", "Stage-II: M1 samples candidates per image question", rollout_inputs,
          lambda c: [c.layout.rollout], rollout_run, rollout_models),
    Stage("judge", "Stage-II: MMRP judge rates every candidate on five criteria", judge_inputs,
          lambda c: [c.layout.judge], judge_run, judge_models),
    Stage("pairs", "Stage-II: preference pairs (LLaMA-Factory dataset)", pairs_inputs,
          lambda c: [c.layout.pairs], pairs_run),
    Stage("train_stage2", "Stage-II training: DPO -> M2", train_stage2_inputs,
          lambda c: [c.layout.stage2_adapter, c.layout.m2, c.layout.train / "stage2_train.yaml",
                     c.layout.train / "stage2_merge.yaml"], train_stage2_run),
    Stage("evaluate", "evaluation of M0, M1, M2 with inference-time scaling", evaluate_inputs,
          lambda c: [c.layout.eval], evaluate_run, evaluate_models),
    Stage("report", "report: the M0/M1/M2 table and the scaling plot", report_inputs,
          lambda c: [c.layout.report], report_run),
]
STAGE_NAMES = [stage.name for stage in STAGES]


def runtime_roles(config: PipelineConfig, simulated_url: str | None, cache_dir: Path,
                  progress: bool) -> dict[str, BackendConfig]:
    """The API role backends as they are called: simulated URL filled in, one shared response cache."""
    from mede2_plugin.pipeline.config import SIMULATED

    roles = {}
    for name, backend in iter_role_backends(config.roles):
        changes: dict[str, Any] = {"progress": backend.progress and progress}
        if backend.base_url == SIMULATED:
            changes["base_url"] = simulated_url
            changes["prices"] = {backend.model: {"input": 0.0, "output": 0.0}}  # nothing is paid
        if backend.cache_dir is None:
            changes["cache_dir"] = str(cache_dir)
        roles[name] = backend.replace(**changes)
    return roles


__all__ = ["LAYOUT", "PREPARE", "STAGES", "STAGE_NAMES", "Context", "Layout", "Stage", "StageError", "StageResult",
           "curate_settings", "declared", "distill_settings", "runtime_roles", "templates_in"]
