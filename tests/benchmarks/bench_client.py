"""Throughput of ``run_batch`` against the fake OpenAI server with a fixed latency; prints JSON.

For concurrency C and per-call latency L the ceiling is C / L requests per second, or the rate
limit when one is set; each case reports the achieved rate, that ceiling, their ratio (target
>= 0.9) and the speed-up over a plain sequential loop with the openai SDK.

    python tests/benchmarks/bench_client.py [--latency 0.2] [--rpm 600]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import openai

from mede2_plugin.client import BackendConfig, ChatRequest, run_batch


class ServerProcess:
    """The fake server in its own process, as a real server would be (no shared GIL)."""

    def __init__(self, latency: float) -> None:
        code = "from mede2_plugin.testing.fake_openai import main; main()"
        self.process = subprocess.Popen([sys.executable, "-c", code, "--latency", str(latency),
                                         "--reply", "the answer is B"],
                                        stdout=subprocess.PIPE, text=True)
        self.base_url = self.process.stdout.readline().strip()

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def requests(count: int, tag: str) -> list[ChatRequest]:
    return [ChatRequest(id=f"{tag}-{i}", messages=[{"role": "user", "content": f"question {tag} {i}"}],
                        max_tokens=32) for i in range(count)]


def sequential_rate(server: ServerProcess, count: int) -> float:
    """Requests per second of a plain loop: one SDK call after another."""
    client = openai.OpenAI(api_key="EMPTY", base_url=server.base_url)
    began = time.perf_counter()
    for i in range(count):
        client.chat.completions.create(model="fake", messages=[{"role": "user", "content": f"sequential {i}"}],
                                       max_tokens=32)
    elapsed = time.perf_counter() - began
    client.close()
    return count / elapsed


def batch_rate(server: ServerProcess, workdir: Path, tag: str, count: int, concurrency: int,
               rpm: float | None = None) -> tuple[float, float]:
    config = BackendConfig(backend="openai", model="fake", base_url=server.base_url, concurrency=concurrency,
                           rpm=rpm, progress=False, cache_dir="off", max_retries=0)
    summary = run_batch(requests(count, tag), workdir / f"{tag}.jsonl", config, stage=tag)
    assert summary.succeeded == count and summary.calls == count, summary
    return count / summary.elapsed_s, summary.elapsed_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.2, help="server latency per call, seconds")
    parser.add_argument("--rpm", type=float, default=600.0, help="requests-per-minute limit of the limited case")
    parser.add_argument("--rounds", type=int, default=20, help="waves of C requests per unlimited case")
    args = parser.parse_args()
    latency = args.latency
    results = []
    with ServerProcess(latency) as server, \
            tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        batch_rate(server, workdir, "warmup", 8, 8)
        sequential = sequential_rate(server, 10)
        cases = [(c, None, c * args.rounds) for c in (1, 8, 32)]
        limited_count = int(args.rpm / 60 * 6) + 1  # about six seconds at the limit
        cases.append((32, args.rpm, limited_count))
        for concurrency, rpm, count in cases:
            tag = f"c{concurrency}" + (f"-rpm{int(rpm)}" if rpm else "")
            rate, elapsed = batch_rate(server, workdir, tag, count, concurrency, rpm)
            ceiling = concurrency / latency if rpm is None else min(concurrency / latency, rpm / 60.0)
            # the exact best possible for a finite batch: whole waves of C calls, or starts spaced 60/rpm
            best = count / (math.ceil(count / concurrency) * latency) if rpm is None else \
                count / ((count - 1) * 60.0 / rpm + latency)
            results.append({"case": tag, "concurrency": concurrency, "rpm": rpm, "requests": count,
                            "elapsed_s": round(elapsed, 3), "achieved_rps": round(rate, 2),
                            "ceiling_rps": round(ceiling, 2), "fraction_of_ceiling": round(rate / ceiling, 3),
                            "fraction_of_finite_batch_best": round(rate / best, 3),
                            "meets_90pct": rate >= 0.9 * ceiling,
                            "speedup_vs_sequential": round(rate / sequential, 2)})
    report = {"benchmark": "mede2_plugin.client.run_batch throughput vs fake OpenAI server",
              "latency_s": latency, "sequential_loop_rps": round(sequential, 2),
              "python": platform.python_version(), "machine": platform.machine(), "cases": results}
    print(json.dumps(report, indent=2))
    return 0 if all(r["meets_90pct"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
