"""``mede2 run PIPELINE.yaml`` and ``mede2 demo``.

    mede2 run pipeline.yaml                      # every stage, skipping what is up to date
    mede2 run pipeline.yaml --from rollout       # from the rollouts on (earlier stages must be done)
    mede2 run pipeline.yaml --until pairs --set rollout.num_candidates=16
    mede2 run pipeline.yaml --force judge        # redo the judge (previous outputs moved aside)
    mede2 run pipeline.yaml --plan               # what it would call and pay; nothing is called
    mede2 run pipeline.yaml --plan --json        # the same as JSON (or --plan-json plan.json)
    mede2 demo --out mede2_demo                  # the whole recipe offline, tiny model, CPU

Exit status: 0 done, 1 a stage left items pending (rerun the same command), 2 an error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from mede2_plugin.core.stage_cli import add_override_arguments
from mede2_plugin.pipeline.steps import STAGE_NAMES

DEMO_INTRO = """\
MedE2 demo: the whole recipe, offline, on this CPU, in a few minutes.
  * M0 is a tiny random-weight Qwen2-VL (0.5M parameters) built on the spot; M1 and M2 are trained
    from it by llamafactory-cli with the package's recipes (tiny sizes, more epochs).
  * The API roles (baseline and strong solvers, classifier, rewriter, teachers, trace judge, MMRP
    judge) are SIMULATED by a local fake OpenAI-compatible server with scripted replies built from
    the bundled questions (examples/demo/simulated_roles.yaml). No real model is called.
  * Rollouts and evaluation run the tiny models through LLaMA-Factory on this machine.
  * The data are fictional cases in the public MedQA and MedXpertQA layouts (examples/demo/data).
The accuracies at the end come from a toy model trained for seconds: they show that every stage
runs and connects, not the effect of MedE2."""


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="start", choices=STAGE_NAMES, metavar="STAGE",
                        help=f"first stage to run (earlier ones must be complete); stages: {', '.join(STAGE_NAMES)}")
    parser.add_argument("--until", choices=STAGE_NAMES, metavar="STAGE", help="last stage to run")
    parser.add_argument("--force", action="append", default=[], metavar="STAGE",
                        help="redo this stage even if up to date (repeatable; 'all' for every stage); its "
                             "previous outputs are moved to OUT/superseded/, unchanged calls come from the cache")
    add_override_arguments(parser, "--set evaluate.samples=8 --set training.stage1.overrides.num_train_epochs=1")
    parser.add_argument("--out", help="output folder (sets output_dir)")


def _load(path: str | Path, args: argparse.Namespace):
    from mede2_plugin.core.stage_cli import overrides_from_args
    from mede2_plugin.pipeline.config import load_pipeline_config

    config = load_pipeline_config(path, overrides_from_args(args))
    if args.out:
        config.output_dir = str(Path(args.out).resolve())
    return config


def print_report(out: Path) -> None:
    """Print the M0/M1/M2 table and where the plot and manifest are."""
    from mede2_plugin.pipeline.steps import Layout

    layout = Layout(out)
    table = layout.report_prefix.with_name("report.md")
    if table.exists():
        print()
        print(table.read_text(encoding="utf-8").rstrip())
    plot = layout.report_prefix.with_name("report_scaling.png")
    print()
    if plot.exists():
        print(f"scaling plot (pass@n and majority-vote@n): {plot}")
    print(f"run manifest: {layout.manifest}")


def _run(config, config_file: str, args: argparse.Namespace) -> int:
    from mede2_plugin.pipeline.runner import EXIT_OK, run_pipeline

    status = run_pipeline(config, config_file, start=args.start, until=args.until, force=args.force,
                          argv=["mede2", *sys.argv[1:]], echo=lambda line: print(line, flush=True))
    if status == EXIT_OK:
        print_report(config.out)
    return status


def _guard(name: str, run: Callable[[], int]) -> int:
    from mede2_plugin.core.settings import ConfigError

    try:
        return run()
    except (ConfigError, OSError, ValueError, RuntimeError) as err:
        print(f"mede2 {name}: {err}", file=sys.stderr)
        return 2


def _plan(config, args: argparse.Namespace) -> int:
    from mede2_plugin.pipeline.plan import format_plan, plan_pipeline, write_plan

    plan = plan_pipeline(config, args.start, args.until)
    if args.plan_json:
        write_plan(plan, args.plan_json)
    print(json.dumps(plan, indent=1) if args.json else format_plan(plan))
    return 0


def run_command(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """``mede2 run PIPELINE.yaml``: the whole recipe from one config, resumable."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__.split("\n\n", 1)[1]
    parser.add_argument("pipeline", help="pipeline YAML (fields of PipelineConfig; see examples/demo/pipeline.yaml)")
    _add_common(parser)
    parser.add_argument("--plan", action="store_true",
                        help="print what the run would call and pay (requests, tokens, dollars interactive and "
                             "batch, per stage and role) and exit; no model is called")
    parser.add_argument("--plan-json", metavar="FILE", help="with --plan (implied): also write the plan as JSON to FILE")
    parser.add_argument("--json", action="store_true", help="with --plan (implied): print the plan as JSON")

    def handle(args: argparse.Namespace) -> int:
        config = _load(args.pipeline, args)
        if args.plan or args.plan_json or args.json:
            return _plan(config, args)
        return _run(config, args.pipeline, args)

    return lambda args: _guard("run", lambda: handle(args))


def demo_command(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """``mede2 demo``: ``mede2 run examples/demo/pipeline.yaml`` with an introduction."""
    _add_common(parser)
    parser.set_defaults(out="mede2_demo")
    parser.description = (parser.description or "") + ". Same as: mede2 run examples/demo/pipeline.yaml --out DIR"

    def handle(args: argparse.Namespace) -> int:
        from mede2_plugin.core.resources import examples_dir

        pipeline = examples_dir() / "demo" / "pipeline.yaml"
        print(DEMO_INTRO, flush=True)
        print(flush=True)
        began = time.monotonic()
        status = _run(_load(pipeline, args), str(pipeline), args)
        print(f"\ndemo finished in {time.monotonic() - began:.0f}s (exit status {status})")
        return status

    return lambda args: _guard("demo", lambda: handle(args))
