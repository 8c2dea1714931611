"""Evaluating one in-process model on several benchmarks: a backend per benchmark (what
``run_batch`` does alone) versus one :class:`SharedBackend` for all (what ``mede2 eval`` and the
pipeline's evaluation stage do now); prints JSON.

Each "benchmark" is one ``run_batch`` call over its own questions, with the cache off so that
both ways do the same generation work; the difference is the model loads (engine start-ups).

    python tests/benchmarks/bench_shared_backend.py [--backend local|vllm] [--benchmarks 4] [--questions 6]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from mede2_plugin.client import BackendConfig, ChatRequest, SharedBackend, run_batch


def questions(benchmark: int, count: int, max_tokens: int) -> list[ChatRequest]:
    return [ChatRequest(id=f"b{benchmark}-q{i}", max_tokens=max_tokens, temperature=0.0, messages=[
        {"role": "user", "content": f"Benchmark {benchmark}, case {i}: the most likely diagnosis? A, B or C."}])
        for i in range(count)]


def evaluate(config: BackendConfig, out: Path, benchmarks: int, count: int, max_tokens: int, shared: bool) -> dict:
    began = time.perf_counter()
    builds = benchmarks
    if shared:
        with SharedBackend(config) as engine:
            for b in range(benchmarks):
                run_batch(questions(b, count, max_tokens), out / f"shared-{b}.jsonl", config, backend=engine)
            builds = engine.builds
    else:
        for b in range(benchmarks):
            run_batch(questions(b, count, max_tokens), out / f"each-{b}.jsonl", config)
    return {"wall_s": round(time.perf_counter() - began, 2), "model_loads": builds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("local", "vllm"), default="local")
    parser.add_argument("--benchmarks", type=int, default=4)
    parser.add_argument("--questions", type=int, default=6)
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()
    os.environ.setdefault("LLAMAFACTORY_VERBOSITY", "WARN")  # keep stdout for the JSON

    from mede2_plugin.tiny_model import build_tiny_qwen2_vl

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = build_tiny_qwen2_vl(root / "tiny")
        config = BackendConfig(backend=args.backend, model=str(model), cache_dir="off", progress=False,
                               engine_args={"template": "mede2_qwen2_vl"})
        each = evaluate(config, root, args.benchmarks, args.questions, args.max_tokens, shared=False)
        shared = evaluate(config, root, args.benchmarks, args.questions, args.max_tokens, shared=True)
    print(json.dumps({
        "backend": args.backend, "benchmarks": args.benchmarks, "questions_each": args.questions,
        "machine": platform.machine(), "a_backend_per_benchmark": each, "one_shared_backend": shared,
        "wall_ratio_per_benchmark_over_shared": round(each["wall_s"] / shared["wall_s"], 2),
    }, indent=2))


if __name__ == "__main__":
    main()
