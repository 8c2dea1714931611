"""``mede2 eval``, ``mede2 report`` and ``mede2 agreement``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from mede2_plugin.core.stage_cli import (
    BackendFlags,
    add_backend_flags,
    add_config_arguments,
    add_flags,
    flag,
    overrides_from_args,
)


def _result_line(metrics: dict) -> str:
    accuracy = metrics.get("accuracy")
    parts = [f"{metrics['benchmark']:<18}", "accuracy " + ("—" if accuracy is None else f"{100 * accuracy:6.2f} %"),
             f"questions {metrics['answered']}/{metrics['questions']}",
             f"unparseable {metrics['unparseable']}/{metrics['samples']}"]
    if metrics.get("majority_vote") is not None:
        parts.append(f"MV@{metrics['samples_per_question']} {100 * metrics['majority_vote']:.2f} %")
    if metrics.get("truncated"):
        parts.append(f"truncated {metrics['truncated']}")
    return "  ".join(parts)


EVAL_FLAGS = [
    flag("--data-root", key="data_root"),
    flag("--benchmarks-config", key="definitions"),
    flag("--out", key="out"),
    flag("--label", key="label"),
    flag("--samples", "-k", key="samples"),
    flag("--temperature", key="temperature"),
    flag("--top-p", key="top_p"),
    flag("--max-tokens", key="max_tokens"),
    flag("--seed", key="seed"),
    flag("--limit", key="limit"),
    flag("--rescore", key="rescore"),
    flag("--no-plot", key="plot", value=False, help="do not draw scaling.png"),
]


def eval_command(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """``mede2 eval --benchmark medxpertqa_mm=DIR --backend vllm --model M1 [--samples 32]``"""
    from mede2_plugin.client.config import BACKEND_NAMES
    from mede2_plugin.evaluate.config import EvalConfig

    add_config_arguments(parser, "evaluation settings YAML (fields of EvalConfig, or an `eval:` section)",
                         "--set samples=32")
    parser.add_argument("--benchmark", action="append", default=[], metavar="NAME[=PATH]",
                        help="benchmark to run (repeatable; adds to benchmarks); PATH is its unpacked public release "
                             "folder (or one file); without PATH it is DATA_ROOT/<default folder>. See --list")
    parser.add_argument("--list", action="store_true", help="list the known benchmarks and exit")
    add_flags(parser, EvalConfig, EVAL_FLAGS)
    add_backend_flags(parser, EvalConfig, BackendFlags("model", "", "evaluated model", {"backend": BACKEND_NAMES}))

    def handler(args: argparse.Namespace) -> int:
        from mede2_plugin.evaluate.benchmarks import (
            BENCHMARKS,
            load_benchmark_configs,
            parse_benchmark_spec,
        )
        from mede2_plugin.evaluate.config import load_eval_config
        from mede2_plugin.evaluate.stage import evaluate

        config = load_eval_config(args.config, overrides_from_args(args))
        config.benchmarks += [parse_benchmark_spec(item) for item in args.benchmark]
        if args.list:
            known = {**BENCHMARKS, **(load_benchmark_configs(config.definitions) if config.definitions else {})}
            for benchmark in known.values():
                print(f"{benchmark.name:<18} {benchmark.title:<20} {benchmark.default_dir:<12} {benchmark.description}")
            return 0
        complete = True
        for metrics, _, folder in evaluate(config):
            print(_result_line(metrics))
            print(f"  -> {folder}", file=sys.stderr)
            complete = complete and metrics["complete"]
        return 0 if complete else 1

    return handler


def report_command(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """``mede2 report eval/ --base Qwen2.5-VL-7B --out reports/table1``"""
    parser.add_argument("runs", nargs="+", help="evaluation roots (OUT of mede2 eval) or model folders OUT/LABEL; "
                                                "models appear in the order found")
    parser.add_argument("--base", help="label of the base model the deltas are taken against (default: the first)")
    parser.add_argument("--models", nargs="+", help="only these model labels, in this order")
    parser.add_argument("--splits", action="store_true", help="add per-split columns (question type, task, ...)")
    parser.add_argument("--out", default="report", help="output prefix: PREFIX.md, PREFIX.csv, PREFIX_scaling.png")
    parser.add_argument("--no-plot", action="store_true", help="no scaling PNG")

    def handler(args: argparse.Namespace) -> int:
        from mede2_plugin.evaluate.config import ReportConfig
        from mede2_plugin.evaluate.stage import report

        written = report(ReportConfig(runs=args.runs, base=args.base, models=args.models, splits=args.splits,
                                      out=args.out, plot=not args.no_plot))
        print(written["markdown"].read_text(encoding="utf-8"))
        for kind, path in written.items():
            print(f"{kind}: {path}", file=sys.stderr)
        return 0

    return handler


def agreement_command(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """``mede2 agreement --human human.csv --judge judged.jsonl --judge-field score --out agreement/``"""
    parser.add_argument("--human", required=True, help="CSV/TSV/JSONL with the human scores")
    parser.add_argument("--judge", help="CSV/TSV/JSONL with the judge scores (default: the --human file)")
    parser.add_argument("--id-field", default="id", help="column naming the item in both files (default id)")
    parser.add_argument("--human-field", default="human", help="human score column (default human)")
    parser.add_argument("--judge-field", default="judge",
                        help="judge score column (default judge); a mapping of Yes/No criteria counts its Yes")
    parser.add_argument("--ddof", type=int, default=0, choices=(0, 1),
                        help="sigma's delta degrees of freedom: 0 population (default), 1 sample")
    parser.add_argument("--out", default="agreement", help="output folder (default agreement)")
    parser.add_argument("--no-plot", action="store_true", help="no histogram PNG")

    def handler(args: argparse.Namespace) -> int:
        from mede2_plugin.evaluate.agreement import (
            agreement,
            read_scores,
            write_agreement,
        )

        try:
            human = read_scores(args.human, args.human_field, args.id_field)
            judge = read_scores(args.judge or args.human, args.judge_field, args.id_field)
            stats, items = agreement(human, judge, ddof=args.ddof)
            written = write_agreement(args.out, stats, items, plot=not args.no_plot)
        except (OSError, ValueError) as err:
            print(f"mede2 agreement: {err}", file=sys.stderr)
            return 2
        summary = {k: v for k, v in stats.to_dict().items() if k not in {"only_human", "only_judge"}}
        summary.update(only_human=len(stats.only_human), only_judge=len(stats.only_judge))
        print(json.dumps(summary, indent=2))
        for kind, path in written.items():
            print(f"{kind}: {path}", file=sys.stderr)
        return 0

    return handler
