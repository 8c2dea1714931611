"""Shared fixtures: the tiny model (built once per session, offline) and small helpers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# Never reach a hub from the tests: everything loads from local paths.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight Qwen2-VL with tokenizer, processor and the MedE2 chat template."""
    import transformers

    from mede2_plugin.tiny_model import build_tiny_qwen2_vl

    if int(transformers.__version__.split(".")[0]) < 5:  # LLaMA-Factory 0.9.4 pins transformers 4.57
        pytest.skip(f"the tiny models are built with transformers 5 APIs; this environment has "
                    f"transformers {transformers.__version__} (see README, Compatibility)")

    return build_tiny_qwen2_vl(tmp_path_factory.mktemp("tiny") / "qwen2_vl")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, process: subprocess.Popen, log: Path | None = None, timeout_s: float = 180.0) -> None:
    """Poll ``url`` until it answers; fail with the server's log if it dies or times out."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = log.read_text(errors="replace") if log else ""
            raise RuntimeError(f"server exited with {process.returncode}:\n{output[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout_s} s")


@pytest.fixture(scope="session")
def llamafactory_api(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``llamafactory-cli api`` server on 127.0.0.1 serving the tiny model; yields base_url."""
    port = free_port()
    log = tmp_path_factory.mktemp("api") / "server.log"
    env = dict(os.environ, API_HOST="127.0.0.1", API_PORT=str(port))
    cli = Path(sys.executable).with_name("llamafactory-cli")
    process = subprocess.Popen(
        [str(cli), "api", "--model_name_or_path", str(tiny_model_dir), "--template", "mede2_qwen2_vl",
         "--infer_backend", "huggingface"],
        env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/v1/models", process, log)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
