"""The base model (``prepare``) and both training stages through ``llamafactory-cli``."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from mede2_plugin.pipeline.stages.base import (
    STAGE2_DATASET,
    TOKENIZER_FILES,
    Context,
    StageError,
    StageResult,
)
from mede2_plugin.pipeline.stages.curation import distill_settings
from mede2_plugin.pipeline.state import StageInputs


def prepare_inputs(ctx: Context) -> StageInputs:
    return StageInputs(values={"build_tiny": ctx.config.models.build_tiny, "seed": ctx.config.seed})


def prepare_run(ctx: Context, decision: str) -> StageResult:
    if not ctx.config.models.build_tiny:
        return StageResult(counts={"base": ctx.config.models.base})
    from mede2_plugin.tiny_model import build_tiny_qwen2_vl

    target = ctx.layout.m0
    if target.exists():
        shutil.rmtree(target)
    build_tiny_qwen2_vl(target, seed=ctx.config.seed)
    ctx.echo(f"  built the tiny random Qwen2-VL (about 0.5M parameters) as M0 in {target}")
    return StageResult(outputs=[target], counts={"base": "tiny random Qwen2-VL"})


def _training_settings(ctx: Context, stage: str) -> dict[str, Any]:
    cfg = getattr(ctx.config.training, stage)
    return {"overrides": cfg.overrides, "merge_overrides": cfg.merge_overrides, "env": ctx.config.training.env,
            "cpu_threads": ctx.config.cpu_threads,
            "template": ctx.config.models.template, "seed": ctx.config.seed}


def _train_inputs(ctx: Context, stage: str, data_dir: Path, base: str) -> StageInputs:
    cfg = getattr(ctx.config.training, stage)
    files = [cfg.recipe] + ([cfg.merge_recipe] if cfg.merge_recipe else []) + [str(data_dir)]
    model_files, values = ctx.model_inputs(base)
    return StageInputs(files=files + model_files, settings=_training_settings(ctx, stage), values=values)


def _copy_processor_files(source: Path, target: Path) -> list[str]:
    """Tokenizer/processor files a full fine-tune did not write (so the folder loads on its own)."""
    copied = []
    for name in TOKENIZER_FILES:
        if (source / name).is_file() and not (target / name).exists():
            shutil.copy2(source / name, target / name)
            copied.append(name)
    return copied


def train(ctx: Context, stage: str, decision: str, base_label: str, data_dir: Path, dataset: str,
          adapter_dir: Path, model_dir: Path) -> StageResult:
    """``llamafactory-cli train`` (then ``export`` for LoRA) of one stage; returns the model folder."""
    from mede2_plugin.llamafactory_ext.chat_template import write_chat_template
    from mede2_plugin.pipeline.training import (
        effective_recipe,
        last_checkpoint,
        run_llamafactory,
        write_recipe,
    )

    cfg = getattr(ctx.config.training, stage)
    base = ctx.model_path(base_label)
    template = ctx.config.models.template
    probe = effective_recipe(cfg.recipe, cfg.overrides, {})
    lora = probe.get("finetuning_type", "lora") == "lora"
    output_dir = adapter_dir if lora else model_dir
    owned: dict[str, Any] = {"model_name_or_path": base, "dataset_dir": str(data_dir), "dataset": dataset,
                             "template": template, "output_dir": str(output_dir), "seed": ctx.config.seed,
                             "overwrite_output_dir": True}
    checkpoint = last_checkpoint(output_dir) if decision == "resume" else None
    if checkpoint is not None:
        owned.update(overwrite_output_dir=False, resume_from_checkpoint=str(checkpoint))
        ctx.echo(f"  resuming from {checkpoint}")
    args = effective_recipe(cfg.recipe, cfg.overrides, owned)
    recipe_file = write_recipe(ctx.layout.train / f"{stage}_train.yaml", args, cfg.recipe)
    log = ctx.layout.logs / f"{stage}.log"
    env = {**ctx.training_env, **ctx.config.training.env}
    if ctx.config.cpu_threads is not None:
        env.setdefault("OMP_NUM_THREADS", str(ctx.config.cpu_threads))
    launch = " ".join(f"{k}={v}" for k, v in ctx.config.training.env.items())
    ctx.echo(f"  {launch + ' ' if launch else ''}llamafactory-cli train {recipe_file}  (log: {log})")
    run_llamafactory("train", recipe_file, log, ctx.config.training.launcher, env)
    outputs: list[Path] = []
    if lora:
        if not cfg.merge_recipe:
            raise StageError(f"training.{stage}: the recipe trains a LoRA adapter; give merge_recipe to merge it")
        merge = effective_recipe(cfg.merge_recipe, cfg.merge_overrides,
                                 {"model_name_or_path": base, "adapter_name_or_path": str(adapter_dir),
                                  "template": template, "export_dir": str(model_dir)})
        merge_file = write_recipe(ctx.layout.train / f"{stage}_merge.yaml", merge, cfg.merge_recipe)
        ctx.echo(f"  llamafactory-cli export {merge_file}")
        run_llamafactory("export", merge_file, log, ctx.config.training.launcher, env)
        outputs.append(adapter_dir)
    base_dir = Path(base)
    if base_dir.is_dir():
        _copy_processor_files(base_dir, model_dir)
    write_chat_template(model_dir, template)
    outputs.append(model_dir)
    return StageResult(outputs=outputs + [recipe_file],
                       counts={"finetuning_type": args.get("finetuning_type", "lora"), "model": str(model_dir),
                               "base": base, "learning_rate": args.get("learning_rate"),
                               "epochs": args.get("num_train_epochs")},
                       message=f"{'M1' if stage == 'stage1' else 'M2'} in {model_dir}")


def train_stage1_inputs(ctx: Context) -> StageInputs:
    return _train_inputs(ctx, "stage1", ctx.layout.stage1_data, "M0")


def train_stage1_run(ctx: Context, decision: str) -> StageResult:
    from mede2_plugin.distill import load_distill_config

    dataset = load_distill_config(distill_settings(ctx, runtime=False)).build.dataset_name
    return train(ctx, "stage1", decision, "M0", ctx.layout.stage1_data, dataset,
                 ctx.layout.stage1_adapter, ctx.layout.m1)


def train_stage2_inputs(ctx: Context) -> StageInputs:
    return _train_inputs(ctx, "stage2", ctx.layout.pairs, "M1")


def train_stage2_run(ctx: Context, decision: str) -> StageResult:
    return train(ctx, "stage2", decision, "M1", ctx.layout.pairs, STAGE2_DATASET,
                 ctx.layout.stage2_adapter, ctx.layout.m2)
