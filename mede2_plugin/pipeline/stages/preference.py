"""Stage-II data: the ``rollout``, ``judge`` and ``pairs`` stages."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from mede2_plugin.client.config import BackendConfig
from mede2_plugin.pipeline.config import model_backend
from mede2_plugin.pipeline.stages.base import (
    PAPER_TEMPLATES,
    STAGE2_DATASET,
    Context,
    StageError,
    StageResult,
    call_dicts,
    declared,
    role_entry,
    seed_everything,
    simulation_inputs,
    with_inputs,
)
from mede2_plugin.pipeline.state import StageInputs


def _question_images(path: Path) -> list[str]:
    if not path.exists():
        return []
    from mede2_plugin.data import read_bank

    return sorted({image for q in read_bank(path) for image in q.images if Path(image).is_file()})


def rollout_config(ctx: Context):
    from mede2_plugin.mmrp.rollout import RolloutConfig

    return RolloutConfig(**{"seed": ctx.config.seed, **ctx.config.rollout})


def rollout_inputs(ctx: Context) -> StageInputs:
    settings = {"rollout": dataclasses.asdict(rollout_config(ctx)), "backend": ctx.config.roles.rollout,
                "cpu_threads": ctx.config.cpu_threads,
                "template": ctx.config.models.template, "seed": ctx.config.seed}
    files = [str(ctx.layout.stage2_questions), str(ctx.layout.m1)] + _question_images(ctx.layout.stage2_questions)
    return StageInputs(files=files, settings=settings, templates=PAPER_TEMPLATES)


def rollout_models(ctx: Context) -> list[dict[str, Any]]:
    config = rollout_config(ctx)
    backend = model_backend(ctx.config.roles.rollout, str(ctx.layout.m1), "rollout")
    return [role_entry("rollout (M1)", backend, n=config.num_candidates, temperature=config.temperature,
                        top_p=config.top_p, max_tokens=config.max_tokens, seed=config.seed)]


def _rollout_job(questions: str, output: str, backend: BackendConfig, config: Any, seed: int,
                 threads: int | None) -> Any:
    from mede2_plugin.mmrp.rollout import run_rollouts

    if backend.backend == "local":
        seed_everything(seed, threads)
    return run_rollouts(questions, output, backend, config)


def rollout_run(ctx: Context, decision: str) -> StageResult:
    from mede2_plugin.pipeline.isolation import maybe_isolated

    backend = ctx.model_role("rollout", "M1")
    config = rollout_config(ctx)
    ctx.echo(f"  M1 samples {config.num_candidates} candidates per image question ({backend.backend} backend)")
    summary = maybe_isolated(backend, _rollout_job, str(ctx.layout.stage2_questions), str(ctx.layout.rollouts),
                             backend, config, ctx.config.seed, ctx.config.cpu_threads)
    counts = {k: v for k, v in summary.to_dict().items() if k not in ("batch", "output")}
    complete = summary.failed == 0 and summary.ok + summary.already_done > 0
    message = f"{summary.questions} questions: {summary.ok + summary.already_done} rolled out, {summary.rejected} rejected"
    if summary.failed:
        message += f", {summary.failed} failed (rerun to retry)"
    return StageResult(outputs=[ctx.layout.rollouts], counts=counts, calls=call_dicts([summary.batch]),
                       complete=complete, message=message)


def judge_config(ctx: Context):
    from mede2_plugin.mmrp.judge import JudgeConfig

    return JudgeConfig(**ctx.config.judge)


def judge_inputs(ctx: Context) -> StageInputs:
    settings = {"judge": dataclasses.asdict(judge_config(ctx)), "backend": declared(ctx.config.roles.judge)}
    return with_inputs(StageInputs(files=[str(ctx.layout.rollouts)], settings=settings,
                             templates=["prompts/mmrp_judge.j2", "prompts/mmrp_question.j2"]),
                 simulation_inputs(ctx, ["judge"]))


def judge_models(ctx: Context) -> list[dict[str, Any]]:
    config = judge_config(ctx)
    return [e for e in [role_entry("judge", ctx.role("judge"), n=1, temperature=config.temperature,
                                    max_tokens=config.max_tokens, max_attempts=config.max_attempts)] if e]


def judge_run(ctx: Context, decision: str) -> StageResult:
    import json

    from mede2_plugin.mmrp.judge import run_judge
    from mede2_plugin.mmrp.pairs import load_judged
    from mede2_plugin.mmrp.stats import compute_stats

    backend = ctx.role("judge")
    if backend is None:
        raise StageError("roles.judge: no MMRP judge configured")
    summary = run_judge(ctx.layout.rollouts, ctx.layout.judged, backend, judge_config(ctx))
    stats = compute_stats(load_judged(ctx.layout.judged))
    stats_file = ctx.layout.judge / "judged.stats.json"
    stats_file.write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    counts = {k: v for k, v in summary.to_dict().items() if k not in ("batches", "output")}
    message = (f"{summary.candidates} candidates: {summary.positives} positive, {summary.negatives} negative, "
               f"{summary.unjudged} unjudged; {summary.judge_calls_saved} judge calls saved by the pre-screen")
    return StageResult(outputs=[ctx.layout.judged, stats_file], counts=counts, calls=call_dicts(summary.batches),
                       complete=summary.incomplete_questions == 0, message=message)


def pairs_policy(ctx: Context):
    from mede2_plugin.mmrp.pairs import PairingPolicy

    return PairingPolicy(**{"seed": ctx.config.seed, **ctx.config.pairs})


def pairs_inputs(ctx: Context) -> StageInputs:
    return StageInputs(files=[str(ctx.layout.judged)], settings={"policy": dataclasses.asdict(pairs_policy(ctx))})


def pairs_run(ctx: Context, decision: str) -> StageResult:
    from mede2_plugin.mmrp.pairs import write_preference_dataset

    report = write_preference_dataset(ctx.layout.judged, ctx.layout.pairs, pairs_policy(ctx), name=STAGE2_DATASET)
    data = report.to_dict()
    counts = {k: (len(v) if isinstance(v, list) else v) for k, v in data.items()
              if k not in ("files", "pairs_per_question")}
    message = (f"{report.pairs} preference pairs from {report.questions} questions "
               f"({len(report.questions_without_positive)} without a positive, "
               f"{len(report.questions_without_negative)} without a negative)")
    if not report.pairs:
        message = "no preference pair could be built (no question has both a positive and a negative): " \
                  "Stage-II has nothing to train on; sample more candidates (rollout.num_candidates)"
    return StageResult(outputs=[ctx.layout.pairs], counts=counts, complete=report.pairs > 0, message=message)
