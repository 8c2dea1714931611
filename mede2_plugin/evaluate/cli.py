"""``mede2 eval``, ``mede2 report`` and ``mede2 agreement``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from mede2_plugin.client import add_backend_arguments, backend_config_from_args


def _benchmark_locations(args: argparse.Namespace, known: dict) -> list[tuple[object, Path]]:
    chosen = []
    for item in args.benchmark:
        name, sep, location = item.partition("=")
        name = name.strip()
        if name not in known:
            raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(sorted(known))}")
        config = known[name]
        if sep:
            path = Path(location)
        elif args.data_root:
            path = Path(args.data_root) / config.default_dir
        else:
            raise ValueError(f"--benchmark {name}: give its folder as {name}=PATH, or --data-root")
        chosen.append((config, path))
    return chosen


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


def eval_command(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """``mede2 eval --benchmark medxpertqa_mm=DIR --backend vllm --model M1 [--samples 32]``"""
    parser.add_argument("--benchmark", action="append", default=[], metavar="NAME[=PATH]",
                        help="benchmark to run (repeatable); PATH is its unpacked public release folder "
                             "(or one file); without PATH it is DATA_ROOT/<default folder>. See --list")
    parser.add_argument("--data-root", help="folder holding the benchmark releases under their default names")
    parser.add_argument("--benchmarks-config", metavar="YAML",
                        help="extra benchmark definitions (a list of BenchmarkConfig fields)")
    parser.add_argument("--list", action="store_true", help="list the known benchmarks and exit")
    parser.add_argument("--out", default="eval", help="evaluation root; results in OUT/LABEL/BENCHMARK (default eval)")
    parser.add_argument("--label", help="the model's name in reports (default: the model folder's name)")
    parser.add_argument("--samples", "-k", type=int, default=1,
                        help="outputs per question; >1 adds pass@n / majority-vote@n curves (paper: 32)")
    parser.add_argument("--temperature", type=float,
                        help="sampling temperature (default 0 for one sample, 0.5 for several)")
    parser.add_argument("--top-p", type=float, help="nucleus sampling (default: the backend's)")
    parser.add_argument("--max-tokens", type=int, default=4096, help="most new tokens per output (default 4096)")
    parser.add_argument("--seed", type=int, help="sampling seed where the backend supports one")
    parser.add_argument("--limit", type=int, help="only the first N questions of each benchmark (smoke runs)")
    parser.add_argument("--rescore", action="store_true", help="no generation: rescore existing generations")
    parser.add_argument("--no-plot", action="store_true", help="do not draw scaling.png")
    add_backend_arguments(parser, role="evaluated model")

    def handler(args: argparse.Namespace) -> int:
        from mede2_plugin.client import SharedBackend
        from mede2_plugin.evaluate.benchmarks import BENCHMARKS, load_benchmark_configs
        from mede2_plugin.evaluate.runner import EvalSettings, evaluate_benchmark

        known = dict(BENCHMARKS)
        try:
            if args.benchmarks_config:
                known.update(load_benchmark_configs(args.benchmarks_config))
            if args.list:
                for config in known.values():
                    print(f"{config.name:<18} {config.title:<20} {config.default_dir:<12} {config.description}")
                return 0
            if not args.benchmark:
                raise ValueError("give at least one --benchmark (see --list)")
            chosen = _benchmark_locations(args, known)
            backend = backend_config_from_args(args)
            settings = EvalSettings(samples=args.samples, temperature=args.temperature, top_p=args.top_p,
                                    max_tokens=args.max_tokens, seed=args.seed, limit=args.limit,
                                    plot=not args.no_plot)
        except (OSError, ValueError) as err:
            print(f"mede2 eval: {err}", file=sys.stderr)
            return 2
        complete = True
        with SharedBackend(backend) as engine:  # in-process weights load once for all benchmarks
            for config, location in chosen:
                try:
                    run = evaluate_benchmark(config, location, backend, args.out, settings, label=args.label,
                                             generate=not args.rescore, engine=engine)
                except (OSError, ValueError) as err:
                    print(f"mede2 eval: {err}", file=sys.stderr)
                    return 2
                print(_result_line(run.metrics))
                print(f"  -> {run.folder}", file=sys.stderr)
                complete = complete and run.metrics["complete"]
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
        from mede2_plugin.evaluate.report import collect_metrics, write_report

        try:
            metrics = collect_metrics(args.runs)
            if args.models:
                missing = [m for m in args.models if m not in metrics]
                if missing:
                    raise ValueError(f"no results for {', '.join(missing)}; found {', '.join(metrics)}")
                metrics = {m: metrics[m] for m in args.models}
            written = write_report(metrics, args.out, base=args.base, splits=args.splits, plot=not args.no_plot)
        except (OSError, ValueError) as err:
            print(f"mede2 report: {err}", file=sys.stderr)
            return 2
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
