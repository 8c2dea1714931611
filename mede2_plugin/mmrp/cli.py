"""``mede2 rollout``, ``mede2 judge``, ``mede2 pairs`` and ``mede2 mmrp`` (the three in one go).

    mede2 rollout --questions curated_images.jsonl --output work/rollouts.jsonl \\
        --m1-backend vllm --m1-model saves/m1
    mede2 judge --rollouts work/rollouts.jsonl --output work/judged.jsonl     # gemini-2.5-pro
    mede2 pairs --judged work/judged.jsonl --out-dir data --pairs-per-question 4
    mede2 mmrp --questions curated_images.jsonl --work-dir work --out-dir data --m1-model saves/m1
    mede2 mmrp -c mmrp.yaml --set rollout.num_candidates=16     # every setting of MMRPConfig

Each takes ``-c FILE.yaml`` (the fields of :class:`~mede2_plugin.mmrp.config.MMRPConfig`, or an
``mmrp:`` section) and ``--set key.path=value``; every flag sets one key path (shown in ``--help``).

Exit status: 0 done, 1 done with failures a rerun may fix (failed rollouts, judge calls that
failed or were not made), 2 bad input or settings.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from mede2_plugin.client.config import BACKEND_NAMES
from mede2_plugin.core.stage_cli import (
    BackendFlags,
    add_backend_flags,
    add_config_arguments,
    add_flags,
    flag,
    overrides_from_args,
)
from mede2_plugin.mmrp.config import MMRPConfig, load_mmrp_config
from mede2_plugin.mmrp.criteria import CRITERIA
from mede2_plugin.mmrp.pairs import IMAGE_MODES, POSITIVE_USES

CHOICES = {"backend": BACKEND_NAMES}
ROLLOUT_FLAGS = [
    flag("--num-candidates", key="rollout.num_candidates"),
    flag("--temperature", key="rollout.temperature"),
    flag("--top-p", key="rollout.top_p"),
    flag("--max-tokens", key="rollout.max_tokens"),
    flag("--seed", key="rollout.seed"),
    flag("--stripped-field", key="rollout.stripped_field"),
    flag("--allow-text-only", key="rollout.require_images", value=False,
         help="roll out questions without images too (default: rejected with a reason)"),
    flag("--media-dir", key="rollout.media_dir"),
]
JUDGE_FLAGS = [
    flag("--send-all", key="judge.send_all"),
    flag("--max-attempts", key="judge.max_attempts"),
    flag("--judge-temperature", key="judge.temperature"),
    flag("--judge-max-tokens", key="judge.max_tokens"),
    flag("--no-response-schema", key="judge.use_response_schema", value=False,
         help="do not send the JSON response schema (servers without structured output)"),
]
PAIRS_FLAGS = [
    flag("--name", key="pairs.name"),
    flag("--pairs-per-question", key="pairs.pairs_per_question"),
    flag("--positive-use", key="pairs.positive_use", choices=POSITIVE_USES),
    flag("--no-prefer-hard-negatives", key="pairs.prefer_hard_negatives", value=False,
         help="do not put right-answer negatives (hard negatives) first"),
    flag("--pair-seed", key="pairs.seed"),
    flag("--criteria", key="pairs.criteria", choices=CRITERIA),
    flag("--images", key="pairs.images", choices=IMAGE_MODES),
    flag("--no-judged-entry", key="pairs.judged_entry", value=False,
         help="do not add the NAME_judged entry (mede2_judged: pairs built at load time)"),
    flag("--drop-flagged", key="pairs.drop_flagged", bare="auto"),  # [human review]
]


def _command(parser: argparse.ArgumentParser, paths: list, sections: list[str]) -> None:
    """``-c``/``--set``/``--prompt`` plus the path flags and the flags of ``sections``."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "\n".join(__doc__.split("\n\n")[1:3])
    add_config_arguments(parser, "Stage-II settings YAML (fields of MMRPConfig, or an `mmrp:` section)",
                         "--set rollout.num_candidates=16", media_key="rollout.allow_outside_media"
                         if "rollout" in sections else None)
    add_flags(parser, MMRPConfig, paths)
    embed = flag("--no-embed-images", key="rollout.embed_images" if "rollout" in sections else "judge.embed_images",
                 value=False, also=["judge.embed_images"] if {"rollout", "judge"} <= set(sections) else [],
                 help="send images as file URIs instead of data URLs")
    if "rollout" in sections or "judge" in sections:
        add_flags(parser, MMRPConfig, [embed])
    for section, flags in (("rollout", ROLLOUT_FLAGS), ("judge", JUDGE_FLAGS), ("pairs", PAIRS_FLAGS)):
        if section in sections:
            add_flags(parser.add_argument_group(section), MMRPConfig, flags)
    if "rollout" in sections:
        add_backend_flags(parser, MMRPConfig, BackendFlags("m1_backend", "m1", "M1 (rollout)", CHOICES))
    if "judge" in sections:
        add_backend_flags(parser, MMRPConfig, BackendFlags("judge_backend", "judge", "MMRP judge", CHOICES))


def _load(args: argparse.Namespace) -> MMRPConfig:
    return load_mmrp_config(args.config, overrides_from_args(args))


def _rollout(config: MMRPConfig) -> int:
    from mede2_plugin.mmrp.stage import rollout

    summary = rollout(config)
    print(f"[rollout] {summary.questions} questions: {summary.ok} rolled out ({summary.candidates} candidates), "
          f"{summary.rejected} rejected, {summary.failed} failed, {summary.already_done} already done; "
          f"{summary.caption_stripped} with a caption-stripped stem -> {config.rollouts_path}", file=sys.stderr)
    return 1 if summary.failed else 0


def _judge(config: MMRPConfig) -> int:
    from mede2_plugin.mmrp.stage import judge
    from mede2_plugin.mmrp.stats import format_table

    summary, stats = judge(config)
    print(f"[judge] {summary.judged_questions} questions judged ({summary.incomplete_questions} incomplete), "
          f"{summary.already_done} already done; {summary.candidates} candidates: {summary.positives} positive, "
          f"{summary.negatives} negative, {summary.unjudged} unjudged; {summary.judge_requests} judge requests "
          f"({summary.retries} retries), {summary.judge_calls_saved} saved by the pre-screen -> {config.judged_path}",
          file=sys.stderr)
    print(format_table(stats), file=sys.stderr)
    return 1 if summary.incomplete_questions else 0


def _pairs(config: MMRPConfig) -> int:
    from mede2_plugin.mmrp.stage import pairs

    report = pairs(config)
    if config.pairs.drop_flagged:  # [human review]
        print(f"[pairs] {len(report.flagged_dropped)} pair(s) flagged by reviewers left out", file=sys.stderr)
    print(f"[pairs] {report.questions} questions -> {report.pairs} pairs ({report.pairs_with_hard_negative} with a "
          f"hard negative); {len(report.questions_without_positive)} without a positive, "
          f"{len(report.questions_without_negative)} without a negative, "
          f"{len(report.questions_without_judged)} with nothing judged -> {report.files['native']}", file=sys.stderr)
    print(json.dumps({k: v for k, v in report.to_dict().items()
                      if k not in ("questions_without_positive", "questions_without_negative")}, indent=2))
    return 0


def _handler(run: Callable[[MMRPConfig], int]) -> Callable[[argparse.Namespace], int]:
    return lambda args: run(_load(args))


def rollout_command(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """``mede2 rollout``: N candidates per image question from M1."""
    _command(parser, [flag("--questions", key="questions"), flag("--output", key="rollouts")], ["rollout"])
    return _handler(_rollout)


def judge_command(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """``mede2 judge``: pre-screen, then rate candidates on the five MMRP criteria."""
    _command(parser, [flag("--rollouts", key="rollouts"), flag("--output", key="judged")], ["judge"])
    return _handler(_judge)


def pairs_command(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """``mede2 pairs``: the LLaMA-Factory preference dataset from judged candidates."""
    _command(parser, [flag("--judged", key="judged"), flag("--out-dir", key="out_dir")], ["pairs"])
    return _handler(_pairs)


def mmrp_command(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """``mede2 mmrp``: rollout, judge and pairs in one go (each step resumable)."""
    _command(parser, [flag("--questions", key="questions"), flag("--work-dir", key="work_dir"),
                      flag("--out-dir", key="out_dir")], ["rollout", "judge", "pairs"])
    return _handler(lambda config: max(_rollout(config), _judge(config), _pairs(config)))
