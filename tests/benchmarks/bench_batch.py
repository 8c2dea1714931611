"""The demo's API stages, interactive vs provider batch (``mode: batch``): calls and priced cost.

    python tests/benchmarks/bench_batch.py [--workdir DIR] [--until judge|distill]

What is measured: ``examples/demo/pipeline.yaml`` runs twice up to ``--until`` (default ``judge``:
every API stage of the demo: baseline and strong solvers, image classifier, caption rewriter, two
teachers with the summary expansion, trace judge, and the MMRP judge of M1's rollouts, which
needs the tiny Stage-I training and the local rollouts first, about 3 minutes a run here;
``distill`` stops before training, about 15 s a run), against the demo's simulated server (the
package's fake OpenAI-compatible server, which also implements the Batch and Files APIs): once as
written (every role interactive), once with every simulated role set to ``mode: batch`` (polling
every 0.05 s; the fake server answers a batch at once). Each run has its own output folder and
response cache, so both do and pay for the same work; the local rollouts are not priced.

Printed JSON, per run: the requests answered (result rows not served from a cache), the HTTP
calls the server received by kind (chat completions; file uploads, batch creations, polls and
downloads), the tokens, and the priced cost. The simulated models cost nothing, so every row is
priced as the paper's model for that role would be with the package's price table
(:mod:`mede2_plugin.client.cost`; ``ROLE_PRICES`` below): a row answered by a provider batch
(it has ``batch_id``) at the batch price, any other at the interactive price. Exit status 1 when
the batch run costs more than 55 % of the interactive one, or the two runs answered different work.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "examples" / "demo" / "pipeline.yaml"
#: simulated model name prefix -> the paper's model for that role, whose list price is used
ROLE_PRICES = {"simulated-baseline": "gpt-4o", "simulated-strong": "gemini-2.5-pro",
               "simulated-classifier": "gpt-4o", "simulated-rewriter": "gpt-4o", "simulated-reasoner": "o3",
               "simulated-summarizer": "o3", "simulated-trace-judge": "gpt-4o", "simulated-judge": "gemini-2.5-pro"}
MAX_RATIO = 0.55


def batch_overrides(pipeline: Path) -> list[str]:
    """``roles.NAME=...`` overrides setting ``mode: batch`` on every simulated role."""
    roles = (yaml.safe_load(pipeline.read_text()) or {}).get("roles") or {}

    def switch(value: Any) -> Any:
        if isinstance(value, dict) and value.get("base_url") == "simulated":
            return {**value, "mode": "batch", "batch_poll_s": 0.05, "batch_poll_max_s": 0.05}
        if isinstance(value, dict):
            return {k: switch(v) for k, v in value.items()}
        if isinstance(value, list):
            return [switch(v) for v in value]
        return value

    return [f"roles.{name}={json.dumps(switch(value))}" for name, value in roles.items() if switch(value) != value]


def stand_in_price(model: str, batch: bool) -> dict[str, float]:
    from mede2_plugin.client.cost import price_for

    stand_in = next(real for prefix, real in ROLE_PRICES.items() if model.startswith(prefix))
    price = price_for(stand_in, mode="batch" if batch else "interactive")
    assert price is not None, f"no {'batch ' if batch else ''}price for {stand_in}"
    return price


def priced_rows(out: Path) -> dict[str, Any]:
    """Rows, tokens and cost of every results file under ``out`` (rows served from a cache excluded)."""
    from mede2_plugin.client.cost import call_cost
    from mede2_plugin.core.jsonl import read_jsonl

    totals: dict[str, Any] = {"rows": 0, "batch_rows": 0, "prompt_tokens": 0, "completion_tokens": 0,
                              "cost_usd": 0.0, "errors": 0}
    answered: set[tuple[str, str, str]] = set()
    for path in sorted(out.rglob("*.jsonl")):
        for row in read_jsonl(path, allow_torn_tail=True):
            if not {"samples", "usage", "model", "backend"} <= set(row) or row.get("cached"):
                continue
            if row["backend"] not in ("openai", "gemini"):  # M1's rollouts run in this process, unpaid
                continue
            if row.get("error"):
                totals["errors"] += 1
                continue
            batch = "batch_id" in row
            usage = row["usage"]
            totals["rows"] += 1
            totals["batch_rows"] += batch
            totals["prompt_tokens"] += usage["prompt_tokens"]
            totals["completion_tokens"] += usage["completion_tokens"]
            totals["cost_usd"] += call_cost(usage["prompt_tokens"], usage["completion_tokens"],
                                            stand_in_price(row["model"], batch))
            answered.add((path.name, str(row["id"]), json.dumps(row["samples"], sort_keys=True)))
    totals["cost_usd"] = round(totals["cost_usd"], 6)
    totals["answers"] = answered
    return totals


def run(mode: str, workdir: Path, until: str) -> dict[str, Any]:
    from mede2_plugin.demo import simulated
    from mede2_plugin.pipeline import load_pipeline_config, run_pipeline

    servers = []
    start_server = simulated.start_server

    def keep(*args: Any, **kwargs: Any) -> Any:  # the run's server, to read its call log afterwards
        server = start_server(*args, **kwargs)
        servers.append(server)
        return server

    simulated.start_server = keep
    try:
        config = load_pipeline_config(DEMO, batch_overrides(DEMO) if mode == "batch" else [])
        config.output_dir = str(workdir / mode)
        began = time.monotonic()
        status = run_pipeline(config, DEMO, until=until, echo=lambda line: None)
        elapsed = time.monotonic() - began
    finally:
        simulated.start_server = start_server
    (server,) = servers
    http = Counter(kind for kind, _ in server.events)
    http["chat_completions"] = server.call_count
    rows = priced_rows(workdir / mode)
    return {"mode": mode, "status": status, "elapsed_s": round(elapsed, 1),
            "requests_answered": rows["rows"], "answered_by_batches": rows["batch_rows"],
            "failed_rows": rows["errors"], "batches": len(server.book.batches),
            "batch_items": sum(len(b.items) for b in server.book.batches.values()),
            "http_calls": dict(sorted(http.items())), "http_calls_total": sum(http.values()),
            "prompt_tokens": rows["prompt_tokens"], "completion_tokens": rows["completion_tokens"],
            "cost_usd": rows["cost_usd"], "_answers": rows["answers"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", help="where the two runs go (default: a temporary folder)")
    parser.add_argument("--until", default="judge", help="last pipeline stage (judge: every API stage; distill: "
                                                         "those before training)")
    args = parser.parse_args()
    stdout = os.dup(1)
    os.dup2(2, 1)  # what the runs print (libraries' log lines included) goes to stderr: stdout is the JSON
    try:
        with tempfile.TemporaryDirectory(prefix="mede2-bench-batch-") as tmp:
            workdir = Path(args.workdir or tmp)
            interactive, batch = run("interactive", workdir, args.until), run("batch", workdir, args.until)
    finally:
        sys.stdout.flush()
        os.dup2(stdout, 1)
        os.close(stdout)
    same_work = interactive.pop("_answers") == batch.pop("_answers")
    ratio = batch["cost_usd"] / interactive["cost_usd"] if interactive["cost_usd"] else None
    report = {"benchmark": "demo API stages (pipeline until %s): interactive vs mode: batch" % args.until,
              "priced_as": ROLE_PRICES, "interactive": interactive, "batch": batch,
              "same_answers": same_work, "batch_cost_ratio": None if ratio is None else round(ratio, 4),
              "max_ratio": MAX_RATIO}
    print(json.dumps(report, indent=2))
    ok = same_work and ratio is not None and ratio <= MAX_RATIO and interactive["status"] == batch["status"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
