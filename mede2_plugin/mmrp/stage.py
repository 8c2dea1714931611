"""Stage-II from its config: rollout, judge and pairs, for the command line and ``mede2 run`` alike.

:func:`rollout`, :func:`judge` and :func:`pairs` run one step of an :class:`~mede2_plugin.mmrp.config.MMRPConfig`
(each resumable) and :func:`run_mmrp` all three; :data:`STEPS` declares them for ``mede2 run``
(inputs, outputs, models), with their results as :class:`~mede2_plugin.core.stage.StageResult`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mede2_plugin.core.files import atomic_write_json
from mede2_plugin.core.prompts import prompt_overrides
from mede2_plugin.core.questions import read_questions
from mede2_plugin.core.stage import (
    Projected,
    StageInputs,
    StagePlan,
    StageResult,
    Step,
    fingerprint_settings,
    role_entry,
)
from mede2_plugin.engines.jobs import maybe_isolated, seed_everything
from mede2_plugin.mmrp.config import MMRPConfig
from mede2_plugin.mmrp.judge import (
    JUDGE_TEMPLATE,
    QUESTION_TEMPLATE,
    JudgeSummary,
    run_judge,
)
from mede2_plugin.mmrp.pairs import PairReport, load_judged, write_preference_dataset
from mede2_plugin.mmrp.rollout import RolloutSummary, results_path_for, run_rollouts
from mede2_plugin.mmrp.stats import compute_stats

PAPER_TEMPLATES = ["prompts/system.j2", "prompts/question.j2", "prompts/assistant.j2"]


def _m1(config: MMRPConfig) -> Any:
    if config.m1_backend is None or not config.m1_backend.model:
        raise ValueError("m1_backend: give M1's model (a folder), e.g. --m1-model saves/m1")
    return config.m1_backend


def _rollout_job(config: MMRPConfig) -> RolloutSummary:
    """The rollouts in this process (a child one for GPU engines, see :func:`rollout`)."""
    backend = _m1(config)
    if backend.backend == "local":
        seed_everything(config.rollout.seed or 0)
    with prompt_overrides(config.prompts):
        return run_rollouts(config.questions, config.rollouts_path, backend, config.rollout)


def rollout(config: MMRPConfig) -> RolloutSummary:
    """M1 samples ``rollout.num_candidates`` candidates per image question (resumable)."""
    if not config.questions:
        raise ValueError("questions: give the image questions (--questions FILE)")
    return maybe_isolated(_m1(config), _rollout_job, config)


def judge(config: MMRPConfig) -> tuple[JudgeSummary, dict[str, Any]]:
    """Pre-screen and judge every candidate (resumable); the statistics of the judged file are
    written to ``judged.stats.json`` beside it and returned."""
    with prompt_overrides(config.prompts):
        summary = run_judge(config.rollouts_path, config.judged_path, config.judge_backend, config.judge)
    stats = compute_stats(load_judged(config.judged_path))
    atomic_write_json(config.stats_path, stats)
    return summary, stats


def flagged_pairs(config: MMRPConfig) -> dict[str, set[str]] | None:
    """[human review] The pairs reviewers flagged, with ``pairs.drop_flagged``; None without it."""
    source = config.pairs.drop_flagged
    if not source:
        return None
    from mede2_plugin.core.review_decisions import flagged_pairs as read_flagged

    if source != "auto" and not Path(source).is_dir():
        raise ValueError(f"pairs.drop_flagged: {source}: no such review folder")
    return read_flagged(config.judged_path if source == "auto" else source)


def pairs(config: MMRPConfig) -> PairReport:
    """The preference dataset in ``out_dir`` from the judged file, and its statistics."""
    if not config.out_dir:
        raise ValueError("out_dir: give the dataset folder (--out-dir DIR)")
    cfg = config.pairs
    report = write_preference_dataset(config.judged_path, config.out_dir, cfg.policy(), name=cfg.name,
                                      images=cfg.images, judged_entry=cfg.judged_entry, drop=flagged_pairs(config))
    atomic_write_json(Path(config.out_dir) / f"{cfg.name}_stats.json", compute_stats(load_judged(config.judged_path)))
    return report


def run_mmrp(config: MMRPConfig) -> tuple[RolloutSummary, JudgeSummary, PairReport]:
    """Rollout, judge and pairs in one go (each resumable)."""
    return rollout(config), judge(config)[0], pairs(config)


# -- the steps of `mede2 run` -----------------------------------------------------------------------

def _question_images(path: str) -> list[str]:
    if not Path(path).exists():
        return []
    return sorted({image for q in read_questions(path) for image in q.images if Path(image).is_file()})


def _model_inputs(backend: Any) -> StageInputs:
    """A model as an input: its folder (content-hashed) or its name (a value)."""
    if Path(backend.model).exists():
        return StageInputs(files=[backend.model])
    return StageInputs(values={"model": backend.model})


def rollout_inputs(config: MMRPConfig) -> StageInputs:
    settings = {"rollout": fingerprint_settings(config.rollout), "backend": fingerprint_settings(_m1(config))}
    inputs = StageInputs(files=[config.questions, *_question_images(config.questions)], settings=settings,
                         templates=list(PAPER_TEMPLATES), prompts=dict(config.prompts))
    return inputs.add(_model_inputs(_m1(config)))


def rollout_models(config: MMRPConfig) -> list[dict[str, Any]]:
    r = config.rollout
    return [role_entry("rollout (M1)", _m1(config), n=r.num_candidates, temperature=r.temperature, top_p=r.top_p,
                       max_tokens=r.max_tokens, seed=r.seed)]


def rollout_step(config: MMRPConfig, echo: Callable[[str], None] = print) -> StageResult:
    r = config.rollout
    echo(f"  M1 samples {r.num_candidates} candidates per image question ({_m1(config).backend} backend)")
    summary = rollout(config)
    counts = {k: v for k, v in summary.to_dict().items() if k not in ("batch", "output")}
    message = f"{summary.questions} questions: {summary.ok + summary.already_done} rolled out, {summary.rejected} rejected"
    if summary.failed:
        message += f", {summary.failed} failed (rerun to retry)"
    return StageResult(outputs=[config.rollouts_path], counts=counts, calls=[summary.batch] if summary.batch else [],
                       complete=summary.failed == 0 and summary.ok + summary.already_done > 0, message=message)


def judge_inputs(config: MMRPConfig) -> StageInputs:
    settings = {"judge": fingerprint_settings(config.judge), "backend": fingerprint_settings(config.judge_backend)}
    return StageInputs(files=[str(config.rollouts_path)], settings=settings,
                       templates=[JUDGE_TEMPLATE, QUESTION_TEMPLATE], prompts=dict(config.prompts))


def judge_models(config: MMRPConfig) -> list[dict[str, Any]]:
    j = config.judge
    return [role_entry("judge", config.judge_backend, n=1, temperature=j.temperature, max_tokens=j.max_tokens,
                       max_attempts=j.max_attempts)]


def judge_step(config: MMRPConfig, echo: Callable[[str], None] = print) -> StageResult:
    summary, _ = judge(config)
    counts = {k: v for k, v in summary.to_dict().items() if k not in ("batches", "output")}
    message = (f"{summary.candidates} candidates: {summary.positives} positive, {summary.negatives} negative, "
               f"{summary.unjudged} unjudged; {summary.judge_calls_saved} judge calls saved by the pre-screen")
    return StageResult(outputs=[config.judged_path, config.stats_path], counts=counts,
                       calls=[b for b in summary.batches if b], complete=summary.incomplete_questions == 0,
                       message=message)


def pairs_inputs(config: MMRPConfig) -> StageInputs:
    return StageInputs(files=[str(config.judged_path)], settings={"pairs": fingerprint_settings(config.pairs)})


def pairs_step(config: MMRPConfig, echo: Callable[[str], None] = print) -> StageResult:
    report = pairs(config)
    counts = {k: (len(v) if isinstance(v, list) else v) for k, v in report.to_dict().items()
              if k not in ("files", "pairs_per_question")}
    message = (f"{report.pairs} preference pairs from {report.questions} questions "
               f"({len(report.questions_without_positive)} without a positive, "
               f"{len(report.questions_without_negative)} without a negative)")
    if not report.pairs:
        message = ("no preference pair could be built (no question has both a positive and a negative): "
                   "Stage-II has nothing to train on; sample more candidates (rollout.num_candidates)")
    return StageResult(outputs=[Path(config.out_dir)], counts=counts, complete=report.pairs > 0, message=message)


def _plan(name: str) -> Callable[[MMRPConfig, Projected], StagePlan]:
    """The plan hook of a step (:mod:`mede2_plugin.mmrp.plan`), with the config's prompt overrides."""
    def plan(config: MMRPConfig, projected: Projected) -> StagePlan:
        from mede2_plugin.mmrp import plan as plans

        with prompt_overrides(config.prompts):
            return getattr(plans, f"plan_{name}")(config, projected)

    return plan


STEPS = [
    Step("rollout", "Stage-II: M1 samples candidates per image question", rollout_step, rollout_inputs,
         lambda c: [c.rollouts_path, results_path_for(c.rollouts_path)], rollout_models, _plan("rollout")),
    Step("judge", "Stage-II: MMRP judge rates every candidate on five criteria", judge_step, judge_inputs,
         lambda c: [c.judged_path, results_path_for(c.judged_path), c.stats_path], judge_models, _plan("judge")),
    Step("pairs", "Stage-II: preference pairs (LLaMA-Factory dataset)", pairs_step, pairs_inputs,
         lambda c: [Path(c.out_dir)]),
]
