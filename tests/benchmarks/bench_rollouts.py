"""Rollouts of the tiny model: vLLM's engine (n samples per prompt, one batched call) versus our
local HuggingFace backend (LLaMA-Factory's engine, one prompt at a time); prints JSON.

Both backends get the same image questions in the Stage-II rollout form (n candidates each,
temperature 1) and are timed apart from their start-up. vLLM runs as the ``vllm`` backend does
from this environment: in the vLLM environment (`mede2 vllm-env`) behind the worker subprocess.

    python tests/benchmarks/bench_rollouts.py [--prompts 16] [--samples 8] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from mede2_plugin.client import BackendConfig, ChatRequest
from mede2_plugin.client.backends.base import create_backend
from mede2_plugin.core.chat_format import openai_messages
from mede2_plugin.core.questions import Question
from mede2_plugin.engines.vllm_env import find_vllm_python


def make_requests(folder: Path, prompts: int, samples: int, max_tokens: int) -> list[ChatRequest]:
    from PIL import Image, ImageDraw

    requests = []
    for i in range(prompts):
        image = Image.new("RGB", (96, 72), (20 + 10 * i % 200, 40, 60))
        ImageDraw.Draw(image).ellipse([10 + i % 30, 10, 50 + i % 30, 50], fill=(230, 230, 230))
        path = folder / f"scan_{i}.png"
        image.save(path)
        q = Question(id=f"q{i}", source="bench", question=f"Case {i}: where is the bright lesion?",
                     options={"A": "Upper left", "B": "Lower right", "C": "Centre"}, answer="A", images=[str(path)])
        requests.append(ChatRequest(id=q.id, messages=openai_messages(q), n=samples, temperature=1.0,
                                    max_tokens=max_tokens, seed=i))
    return requests


def measure(config: BackendConfig, requests: list[ChatRequest]) -> dict:
    began = time.perf_counter()
    backend = create_backend(config)
    started = time.perf_counter()
    try:
        results = backend.generate_batch(requests)
    finally:
        generated = time.perf_counter()
        backend.close()
    failures = [str(r) for r in results if isinstance(r, BaseException)]
    if failures:
        raise RuntimeError(f"{config.backend}: {len(failures)} requests failed, e.g. {failures[0]}")
    samples = sum(len(r.samples) for r in results)
    tokens = sum(r.completion_tokens for r in results)
    seconds = generated - started
    return {"startup_s": round(started - began, 2), "generate_s": round(seconds, 2), "samples": samples,
            "completion_tokens": tokens, "samples_per_s": round(samples / seconds, 2),
            "tokens_per_s": round(tokens / seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=16, help="image questions (default 16)")
    parser.add_argument("--samples", type=int, default=8, help="candidates per question, as the paper's 8")
    parser.add_argument("--max-tokens", type=int, default=64, help="most new tokens per candidate")
    parser.add_argument("--model", help="model folder (default: a tiny Qwen2-VL built now)")
    args = parser.parse_args()
    report = os.fdopen(os.dup(1), "w")  # stdout carries only the JSON; library logs go to stderr
    os.dup2(2, 1)

    python = find_vllm_python()
    if python is None:
        raise SystemExit("no vLLM environment: build it with `mede2 vllm-env` (or set MEDE2_VLLM_PYTHON)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = args.model
        if model is None:
            from mede2_plugin.tiny_model import build_tiny_qwen2_vl

            model = str(build_tiny_qwen2_vl(folder / "tiny"))
        requests = make_requests(folder, args.prompts, args.samples, args.max_tokens)
        vllm = measure(BackendConfig(backend="vllm", model=model, batch_size=len(requests), progress=False,
                                     engine_args={"template": "mede2_qwen2_vl", "vllm_python": str(python),
                                                  "max_model_len": 2048}), requests)
        local = measure(BackendConfig(backend="local", model=model, batch_size=len(requests), progress=False,
                                      engine_args={"template": "mede2_qwen2_vl"}), requests)
    report.write(json.dumps({
        "benchmark": "rollouts of the tiny Qwen2-VL: vLLM engine vs local HuggingFace backend",
        "prompts": args.prompts, "samples_per_prompt": args.samples, "max_tokens": args.max_tokens,
        "vllm": vllm, "local_hf": local,
        "samples_per_s_ratio_vllm_over_local": round(vllm["samples_per_s"] / local["samples_per_s"], 2),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "vllm_python": str(python)},
    }, indent=2) + "\n")
    report.flush()


if __name__ == "__main__":
    main()
