"""One training stage from its config: ``llamafactory-cli train`` (then ``export`` for LoRA).

:class:`TrainingConfig` is the ``training:`` section of ``mede2 run``; :class:`TrainRun` is what
one stage trains (the pipeline fills in the base model, the dataset and the folders), and
:data:`STEP` declares it for ``mede2 run``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mede2_plugin.core.chat_template import write_chat_template
from mede2_plugin.core.stage import StageInputs, StageResult, Step
from mede2_plugin.train.llamafactory import (
    effective_recipe,
    last_checkpoint,
    run_llamafactory,
    write_recipe,
)

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt",
                   "preprocessor_config.json", "processor_config.json", "video_preprocessor_config.json",
                   "chat_template.jinja", "chat_template.json")


@dataclass
class TrainStageConfig:
    """One training stage through ``llamafactory-cli``.

    Attributes:
        recipe: the ``llamafactory-cli train`` YAML (our ``recipes/`` or a copy).
        overrides: keys set over the recipe (``learning_rate``, ``num_train_epochs``, ...). The
            pipeline itself always sets ``model_name_or_path``, ``dataset_dir``, ``dataset``,
            ``output_dir``, ``template`` and ``seed``.
        merge_recipe: the ``llamafactory-cli export`` YAML that merges a LoRA adapter (used when
            the training is LoRA; ignored for full fine-tuning).
        merge_overrides: keys set over the merge recipe.
    """

    recipe: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)
    merge_recipe: str | None = None
    merge_overrides: dict[str, Any] = field(default_factory=dict)


def _stage1_default() -> TrainStageConfig:
    return TrainStageConfig(recipe="recipes/stage1_lora.yaml", merge_recipe="recipes/stage1_merge.yaml")


def _stage2_default() -> TrainStageConfig:
    return TrainStageConfig(recipe="recipes/stage2_dpo.yaml", merge_recipe="recipes/stage1_merge.yaml")


@dataclass
class TrainingConfig:
    """Both training stages. Several GPUs or nodes go through LLaMA-Factory's own launcher:
    ``llamafactory-cli`` starts ``torchrun`` when ``FORCE_TORCHRUN=1`` (with ``NPROC_PER_NODE``,
    ``NNODES``, ``NODE_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``), from the environment of
    ``mede2 run`` or from ``env`` below; DeepSpeed ZeRO-3 comes from the recipe's ``deepspeed`` key.

    Attributes:
        stage1: Stage-I (LoRA SFT, then merge -> M1).
        stage2: Stage-II (full DPO -> M2; LoRA recipes are merged too).
        launcher: the LLaMA-Factory command (default: the one beside this Python).
        env: environment variables set for the training processes (values as strings).
    """

    stage1: TrainStageConfig = field(default_factory=_stage1_default)
    stage2: TrainStageConfig = field(default_factory=_stage2_default)
    launcher: str = "llamafactory-cli"
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class TrainRun:
    """What one stage trains, and where.

    Attributes:
        name: ``stage1`` or ``stage2`` (recipe and log file names).
        stage: the stage's recipes and overrides.
        base: the model trained from (a folder or a hub id).
        data_dir: the dataset folder (``dataset_dir``); dataset: its entry.
        adapter_dir: where a LoRA adapter is trained; model_dir: the full model that comes out.
        recipes_dir: where the effective recipes are written; log: the training log.
        template: the LLaMA-Factory template; chat_template: its jinja chat template, written into the model.
        seed: the training seed.
        launcher: the LLaMA-Factory command; env: variables set for it (shown: the user's own).
        shown_env: the variables to show in the command line printed.
        resume: continue from the last checkpoint of an interrupted run.
    """

    name: str
    stage: TrainStageConfig
    base: str
    data_dir: Path
    dataset: str
    adapter_dir: Path
    model_dir: Path
    recipes_dir: Path
    log: Path
    template: str
    chat_template: str | None = None
    seed: int = 0
    launcher: str = "llamafactory-cli"
    env: dict[str, str] = field(default_factory=dict)
    shown_env: dict[str, str] = field(default_factory=dict)
    resume: bool = False


def copy_processor_files(source: Path, target: Path) -> list[str]:
    """Tokenizer/processor files a full fine-tune did not write (so the folder loads on its own)."""
    copied = []
    for name in TOKENIZER_FILES:
        if (source / name).is_file() and not (target / name).exists():
            shutil.copy2(source / name, target / name)
            copied.append(name)
    return copied


def train(run: TrainRun, echo: Callable[[str], None] = print) -> StageResult:
    """``llamafactory-cli train`` (then ``export`` for LoRA) of one stage; the model in ``run.model_dir``."""
    cfg = run.stage
    lora = effective_recipe(cfg.recipe, cfg.overrides, {}).get("finetuning_type", "lora") == "lora"
    output_dir = run.adapter_dir if lora else run.model_dir
    owned: dict[str, Any] = {"model_name_or_path": run.base, "dataset_dir": str(run.data_dir), "dataset": run.dataset,
                             "template": run.template, "output_dir": str(output_dir), "seed": run.seed,
                             "overwrite_output_dir": True}
    checkpoint = last_checkpoint(output_dir) if run.resume else None
    if checkpoint is not None:
        owned.update(overwrite_output_dir=False, resume_from_checkpoint=str(checkpoint))
        echo(f"  resuming from {checkpoint}")
    args = effective_recipe(cfg.recipe, cfg.overrides, owned)
    recipe_file = write_recipe(run.recipes_dir / f"{run.name}_train.yaml", args, cfg.recipe)
    launch = " ".join(f"{k}={v}" for k, v in run.shown_env.items())
    echo(f"  {launch + ' ' if launch else ''}llamafactory-cli train {recipe_file}  (log: {run.log})")
    run_llamafactory("train", recipe_file, run.log, run.launcher, run.env)
    outputs: list[Path] = []
    if lora:
        if not cfg.merge_recipe:
            raise ValueError(f"training.{run.name}: the recipe trains a LoRA adapter; give merge_recipe to merge it")
        merge = effective_recipe(cfg.merge_recipe, cfg.merge_overrides,
                                 {"model_name_or_path": run.base, "adapter_name_or_path": str(run.adapter_dir),
                                  "template": run.template, "export_dir": str(run.model_dir)})
        merge_file = write_recipe(run.recipes_dir / f"{run.name}_merge.yaml", merge, cfg.merge_recipe)
        echo(f"  llamafactory-cli export {merge_file}")
        run_llamafactory("export", merge_file, run.log, run.launcher, run.env)
        outputs.append(run.adapter_dir)
    if Path(run.base).is_dir():
        copy_processor_files(Path(run.base), run.model_dir)
    write_chat_template(run.model_dir, run.template, run.chat_template)
    outputs.append(run.model_dir)
    return StageResult(outputs=outputs + [recipe_file],
                       counts={"finetuning_type": args.get("finetuning_type", "lora"), "model": str(run.model_dir),
                               "base": run.base, "learning_rate": args.get("learning_rate"),
                               "epochs": args.get("num_train_epochs")},
                       message=f"{'M1' if run.name == 'stage1' else 'M2'} in {run.model_dir}")


def train_inputs(run: TrainRun) -> StageInputs:
    cfg = run.stage
    inputs = StageInputs(files=[cfg.recipe, *([cfg.merge_recipe] if cfg.merge_recipe else []), str(run.data_dir)],
                         settings={"overrides": cfg.overrides, "merge_overrides": cfg.merge_overrides,
                                   "env": run.shown_env, "template": run.template, "seed": run.seed})
    if Path(run.base).exists():
        inputs.files.append(run.base)
    else:
        inputs.values["base"] = run.base
    return inputs


def train_outputs(run: TrainRun) -> list[Path]:
    return [run.adapter_dir, run.model_dir, run.recipes_dir / f"{run.name}_train.yaml",
            run.recipes_dir / f"{run.name}_merge.yaml"]


STEP = Step("train", "training through llamafactory-cli", train, train_inputs, train_outputs)
