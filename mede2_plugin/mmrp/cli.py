"""``mede2 rollout``, ``mede2 judge``, ``mede2 pairs`` and ``mede2 mmrp`` (the three in one go).

    mede2 rollout --questions curated_images.jsonl --output work/rollouts.jsonl \\
        --m1-backend vllm --m1-model saves/m1
    mede2 judge --rollouts work/rollouts.jsonl --output work/judged.jsonl     # gemini-2.5-pro
    mede2 pairs --judged work/judged.jsonl --out-dir data --pairs-per-question 4
    mede2 mmrp --questions curated_images.jsonl --work-dir work --out-dir data --m1-model saves/m1

Exit status: 0 done, 1 done with failures a rerun may fix (failed rollouts, judge calls that
failed or were not made), 2 bad input or settings.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mede2_plugin.mmrp.criteria import CRITERIA

DEFAULT_JUDGE = {"backend": "gemini", "model": "gemini-2.5-pro"}
DEFAULT_M1 = {"backend": "local"}


def _add_rollout_arguments(parser: argparse.ArgumentParser) -> None:
    from mede2_plugin.client import add_backend_arguments
    from mede2_plugin.mmrp.rollout import RolloutConfig

    d = RolloutConfig()
    group = parser.add_argument_group("rollout")
    group.add_argument("--num-candidates", type=int, default=d.num_candidates,
                       help=f"candidates sampled per question (paper: 8; default {d.num_candidates})")
    group.add_argument("--temperature", type=float, default=d.temperature,
                       help=f"M1 sampling temperature (default {d.temperature})")
    group.add_argument("--top-p", type=float, default=d.top_p, help="M1 nucleus sampling (default: backend's)")
    group.add_argument("--max-tokens", type=int, default=d.max_tokens,
                       help=f"most new tokens per candidate (default {d.max_tokens})")
    group.add_argument("--seed", type=int, default=d.seed, help="sampling seed for backends that take one")
    group.add_argument("--stripped-field", default=d.stripped_field,
                       help="Question.metadata key of the caption-stripped stem, used when present "
                            f"(default {d.stripped_field})")
    group.add_argument("--allow-text-only", action="store_true",
                       help="roll out questions without images too (default: rejected with a reason)")
    group.add_argument("--media-dir", help="folder relative image paths are relative to "
                                           "(default: the questions file's folder)")
    group.add_argument("--no-embed-images", action="store_true",
                       help="send images as file URIs instead of data URLs")
    add_backend_arguments(parser, prefix="m1", role="M1 (rollout)")


def _add_judge_arguments(parser: argparse.ArgumentParser) -> None:
    from mede2_plugin.client import add_backend_arguments
    from mede2_plugin.mmrp.judge import JudgeConfig

    d = JudgeConfig()
    group = parser.add_argument_group("judge")
    group.add_argument("--send-all", action="store_true",
                       help="judge every candidate, also those whose answer the pre-screen found wrong "
                            "(the paper's protocol; more judge calls)")
    group.add_argument("--max-attempts", type=int, default=d.max_attempts,
                       help=f"judge calls per candidate until a valid verdict (default {d.max_attempts})")
    group.add_argument("--judge-temperature", type=float, default=d.temperature,
                       help=f"judge temperature (default {d.temperature})")
    group.add_argument("--judge-max-tokens", type=int, default=d.max_tokens,
                       help="most output tokens per verdict (default: provider's)")
    group.add_argument("--no-response-schema", action="store_true",
                       help="do not send the JSON response schema (servers without structured output)")
    add_backend_arguments(parser, prefix="judge", role="MMRP judge (default gemini / gemini-2.5-pro)")


def _add_pairs_arguments(parser: argparse.ArgumentParser) -> None:
    from mede2_plugin.mmrp.pairs import IMAGE_MODES, POSITIVE_USES, PairingPolicy

    d = PairingPolicy()
    group = parser.add_argument_group("pairs")
    group.add_argument("--name", default="mede2_stage2",
                       help="dataset name in dataset_info.json (default mede2_stage2, what recipes/stage2_dpo.yaml uses)")
    group.add_argument("--pairs-per-question", type=int, default=d.pairs_per_question,
                       help="most pairs per question (default: no cap)")
    group.add_argument("--positive-use", choices=POSITIVE_USES, default=d.positive_use,
                       help="once: each positive in at most one pair; all: every positive x negative "
                            f"(default {d.positive_use})")
    group.add_argument("--no-prefer-hard-negatives", action="store_true",
                       help="do not put right-answer negatives (hard negatives) first")
    group.add_argument("--pair-seed", type=int, default=d.seed, help=f"pairing seed (default {d.seed})")
    group.add_argument("--criteria", nargs="+", choices=CRITERIA, default=list(CRITERIA),
                       help="criteria a positive must pass (default: all five)")
    group.add_argument("--images", choices=IMAGE_MODES, default="absolute",
                       help="absolute: keep absolute image paths; copy: copy images into OUT_DIR/images")
    group.add_argument("--no-judged-entry", action="store_true",
                       help="do not add the NAME_judged (mede2_judged, pairs built at load time) entry")
    group.add_argument("--drop-flagged", nargs="?", const="auto", metavar="REVIEW_DIR",  # [human review]
                       help="leave out the pairs a reviewer flagged in `mede2 review` (default: the review "
                            "folder found above the judged file)")


def _policy(args: argparse.Namespace) -> Any:
    from mede2_plugin.mmrp.pairs import PairingPolicy

    return PairingPolicy(pairs_per_question=args.pairs_per_question, positive_use=args.positive_use,
                         prefer_hard_negatives=not args.no_prefer_hard_negatives, seed=args.pair_seed,
                         criteria=list(args.criteria))


def _rollout(args: argparse.Namespace, questions: str, output: str) -> int:
    from mede2_plugin.client import backend_config_from_args
    from mede2_plugin.mmrp.rollout import RolloutConfig, run_rollouts

    config = RolloutConfig(num_candidates=args.num_candidates, temperature=args.temperature, top_p=args.top_p,
                           max_tokens=args.max_tokens, seed=args.seed, stripped_field=args.stripped_field,
                           require_images=not args.allow_text_only, media_dir=args.media_dir,
                           embed_images=not args.no_embed_images)
    backend = backend_config_from_args(args, "m1", **DEFAULT_M1)
    summary = run_rollouts(questions, output, backend, config)
    print(f"[rollout] {summary.questions} questions: {summary.ok} rolled out ({summary.candidates} candidates), "
          f"{summary.rejected} rejected, {summary.failed} failed, {summary.already_done} already done; "
          f"{summary.caption_stripped} with a caption-stripped stem -> {output}",
          file=sys.stderr)
    return 1 if summary.failed else 0


def _judge(args: argparse.Namespace, rollouts: str, output: str) -> int:
    from mede2_plugin.client import backend_config_from_args
    from mede2_plugin.mmrp.judge import JudgeConfig, run_judge
    from mede2_plugin.mmrp.pairs import load_judged
    from mede2_plugin.mmrp.stats import compute_stats, format_table

    config = JudgeConfig(send_all=args.send_all, max_attempts=args.max_attempts,
                         temperature=args.judge_temperature, max_tokens=args.judge_max_tokens,
                         use_response_schema=not args.no_response_schema,
                         embed_images=not args.no_embed_images)
    backend = backend_config_from_args(args, "judge", **DEFAULT_JUDGE)
    summary = run_judge(rollouts, output, backend, config)
    print(f"[judge] {summary.judged_questions} questions judged ({summary.incomplete_questions} incomplete), "
          f"{summary.already_done} already done; {summary.candidates} candidates: {summary.positives} positive, "
          f"{summary.negatives} negative, {summary.unjudged} unjudged; {summary.judge_requests} judge requests "
          f"({summary.retries} retries), {summary.judge_calls_saved} saved by the pre-screen -> {output}",
          file=sys.stderr)
    stats = compute_stats(load_judged(output))
    stats_path = Path(output).with_name(Path(output).stem + ".stats.json")
    stats_path.write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    print(format_table(stats), file=sys.stderr)
    return 1 if summary.incomplete_questions else 0


def _flagged(args: argparse.Namespace, judged: str) -> dict[str, set[str]] | None:
    """[human review] The pairs flagged in the review folder, with ``--drop-flagged``."""
    if not args.drop_flagged:
        return None
    from mede2_plugin.review.decisions import flagged_pairs

    source = judged if args.drop_flagged == "auto" else args.drop_flagged
    if args.drop_flagged != "auto" and not Path(source).is_dir():
        raise ValueError(f"--drop-flagged {source}: no such review folder")
    flagged = flagged_pairs(source)
    print(f"[pairs] {len(flagged)} pair(s) flagged by reviewers", file=sys.stderr)
    return flagged


def _pairs(args: argparse.Namespace, judged: str, out_dir: str) -> int:
    from mede2_plugin.mmrp.pairs import load_judged, write_preference_dataset
    from mede2_plugin.mmrp.stats import compute_stats

    report = write_preference_dataset(judged, out_dir, _policy(args), name=args.name, images=args.images,
                                      judged_entry=not args.no_judged_entry, drop=_flagged(args, judged))
    stats = compute_stats(load_judged(judged))
    (Path(out_dir) / f"{args.name}_stats.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    print(f"[pairs] {report.questions} questions -> {report.pairs} pairs ({report.pairs_with_hard_negative} with a "
          f"hard negative); {len(report.questions_without_positive)} without a positive, "
          f"{len(report.questions_without_negative)} without a negative, "
          f"{len(report.questions_without_judged)} with nothing judged -> {report.files['native']}", file=sys.stderr)
    print(json.dumps({k: v for k, v in report.to_dict().items()
                      if k not in ("questions_without_positive", "questions_without_negative")}, indent=2))
    return 0


def _guard(name: str, run: Callable[[], int]) -> int:
    try:
        return run()
    except (OSError, ValueError) as err:
        print(f"mede2 {name}: {err}", file=sys.stderr)
        return 2


def rollout_command(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """``mede2 rollout``: N candidates per image question from M1."""
    parser.add_argument("--questions", required=True, help="JSONL bank of questions (Question records)")
    parser.add_argument("--output", required=True, help="rollout records JSONL (resumable); the client's "
                                                        "raw results go to OUTPUT.results.jsonl beside it")
    _add_rollout_arguments(parser)
    return lambda args: _guard("rollout", lambda: _rollout(args, args.questions, args.output))


def judge_command(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """``mede2 judge``: pre-screen, then rate candidates on the five MMRP criteria."""
    parser.add_argument("--rollouts", required=True, help="rollout records JSONL (mede2 rollout output)")
    parser.add_argument("--output", required=True, help="judged-questions JSONL (resumable); statistics go "
                                                        "to OUTPUT.stats.json")
    parser.add_argument("--no-embed-images", action="store_true", help="send images as file URIs, not data URLs")
    _add_judge_arguments(parser)
    return lambda args: _guard("judge", lambda: _judge(args, args.rollouts, args.output))


def pairs_command(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """``mede2 pairs``: the LLaMA-Factory preference dataset from judged candidates."""
    parser.add_argument("--judged", required=True, help="judged-questions JSONL (mede2 judge output)")
    parser.add_argument("--out-dir", required=True, help="dataset folder (dataset_dir of the DPO recipe)")
    _add_pairs_arguments(parser)
    return lambda args: _guard("pairs", lambda: _pairs(args, args.judged, args.out_dir))


def mmrp_command(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """``mede2 mmrp``: rollout, judge and pairs in one go (each step resumable)."""
    parser.add_argument("--questions", required=True, help="JSONL bank of image questions")
    parser.add_argument("--work-dir", required=True, help="folder for rollouts.jsonl and judged.jsonl")
    parser.add_argument("--out-dir", required=True, help="dataset folder (dataset_dir of the DPO recipe)")
    _add_rollout_arguments(parser)
    _add_judge_arguments(parser)
    _add_pairs_arguments(parser)

    def run(args: argparse.Namespace) -> int:
        work = Path(args.work_dir)
        work.mkdir(parents=True, exist_ok=True)
        rollouts, judged = str(work / "rollouts.jsonl"), str(work / "judged.jsonl")
        status = _rollout(args, args.questions, rollouts)
        status = max(status, _judge(args, rollouts, judged))
        return max(status, _pairs(args, judged, args.out_dir))

    return lambda args: _guard("mmrp", lambda: run(args))
