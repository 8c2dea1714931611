"""``mede2 run --plan`` on the demo pipeline, checked against the run that follows.

The demo's API roles are simulated by a local fake server that reports realistic token usage
(``usage="tokens"``: a BPE-like count, see ``mede2_plugin.testing.server.bpe_tokens``), and the
simulated models are given prices. The plan is made first, with every way of calling a model
disabled; then the demo runs through the judge (``--until judge``: curation, Stage-I data,
Stage-I training, rollouts, judge). What this proves: the plan renders the requests the run
then sends (same ids, counts inside the plan's ranges, equal where the plan says exact), and its
character-based input estimate agrees within 25 % with the fake server's tokenizer-like count of
those very requests. It does not prove agreement with a provider's own tokenizer (the fake
server's rule is measured against ``o200k_base`` in tests/benchmarks/bench_token_estimate.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mede2_plugin.client.estimate import input_tokens
from mede2_plugin.core.jsonl import latest_records
from mede2_plugin.core.resources import examples_dir
from mede2_plugin.pipeline.config import load_pipeline_config
from mede2_plugin.pipeline.plan import format_plan, plan_calls, plan_pipeline

DEMO = examples_dir() / "demo" / "pipeline.yaml"
MODELS = ("baseline-solver", "strong-solver", "classifier", "rewriter", "reasoner", "summarizer", "trace-judge", "judge")
PRICES = "prices={" + ", ".join(f"simulated-{m}: {{input: 2.0, output: 8.0, batch: {{input: 1.0, output: 4.0}}}}"
                                for m in MODELS) + "}"

pytestmark = pytest.mark.slow


def _config(out: Path):
    config = load_pipeline_config(DEMO, [PRICES])
    config.output_dir = str(out)
    return config


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):
    """The plan of a fresh demo run (nothing may be called meanwhile), then the run itself."""
    out = tmp_path_factory.mktemp("plan") / "run"
    patch = pytest.MonkeyPatch()
    forbidden = []

    def refuse(what):
        def guard(*args, **kwargs):
            forbidden.append(what)
            raise AssertionError(f"--plan must not {what}")
        return guard

    patch.setattr("mede2_plugin.client.backends.base.BaseBackend.__init__", refuse("build a backend"))
    patch.setattr("mede2_plugin.client.backends.base.create_backend", refuse("build a backend"))
    patch.setattr("mede2_plugin.testing.server.FakeServer.start", refuse("start a server"))
    patch.setattr("mede2_plugin.tiny_model.build_tiny_qwen2_vl", refuse("build a model"))
    patch.setattr("subprocess.Popen.__init__", refuse("start a process"))
    try:
        found, _ = plan_calls(_config(out))
        plan = plan_pipeline(_config(out))
    finally:
        patch.undo()
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*")) if out.exists() else []
    env = {**os.environ, "OPENAI_API_KEY": "sk-plan-test"}
    done = subprocess.run([sys.executable, "-m", "mede2_plugin.cli", "run", str(DEMO), "--out", str(out), "--until",
                           "judge", "--set", PRICES], env=env, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return {"out": out, "found": found, "plan": plan, "forbidden": forbidden, "written": written}


def test_the_plan_calls_nothing_and_writes_nothing(demo):
    assert demo["forbidden"] == []
    assert demo["written"] == []  # not even the output folder
    rows = {(r["stage"], r["role"]): r for r in demo["plan"]["rows"]}
    assert rows[("curate", "baseline_solver @medqa_demo")]["usd_interactive"] is not None  # the prices given
    assert {r["stage"] for r in demo["plan"]["rows"]} >= {"curate", "distill", "rollout", "judge", "evaluate"}


def test_request_counts_are_the_calls_the_run_made(demo):
    calls_made = [json.loads(line) for line in (demo["out"] / "simulated" / "calls.jsonl").read_text().splitlines()]
    paid = 0
    checked = 0
    for step in demo["found"]:
        if step.stage not in ("curate", "distill", "rollout", "judge"):
            continue
        rows = latest_records(step.calls.output)
        sent = {rid for rid, row in rows.items() if row.get("error") is None}
        low, high = len(step.calls.certain), len(step.calls.certain) + len(step.calls.possible)
        assert low <= len(sent) <= high, (step.stage, step.calls.role, low, len(sent), high)
        planned = {r.id for r in step.calls.certain + step.calls.possible}
        assert sent <= planned, (step.calls.role, sorted(sent - planned)[:3])  # the same requests, by id
        assert {r.id for r in step.calls.certain} <= sent  # "certain" ones were all sent
        if step.calls.backend.backend == "openai":
            paid += sum(1 for row in rows.values() if not row.get("cached"))
        checked += 1
    assert checked >= 14
    assert paid == len(calls_made)  # every call the simulated server received was planned
    exact = [s for s in demo["found"] if s.calls.certain and not s.calls.possible]
    assert {s.calls.role for s in exact} >= {"baseline_solver @medqa_demo", "baseline_solver @medxpertqa_mm_demo"}


def _tokens(found, rendered_only: bool = False) -> dict[str, tuple[int, int, bool]]:
    """Per role: the plan's input estimate and the fake server's reported prompt tokens over the
    requests the run sent (cache hits left out), and whether some held text still to come."""
    result = {}
    for step in found:
        if step.calls.backend.backend != "openai":
            continue
        rows = latest_records(step.calls.output)
        estimated = reported = 0
        for request in step.calls.certain + step.calls.possible:
            row = rows.get(request.id)
            if row is None or row.get("error") is not None or row.get("cached"):
                continue
            estimated += input_tokens(request, step.calls.backend) + step.calls.extra_tokens.get(request.id, 0)
            reported += row["usage"]["prompt_tokens"]
        if reported:
            result[step.calls.role] = (estimated, reported, bool(step.calls.extra_tokens))
    return result


def test_input_token_estimate_is_within_25_percent_of_reported_usage(demo, tmp_path):
    # the plan before the run: rendered requests within 25 %; requests holding a text to come
    # (a summary to expand, a trace or a candidate to rate) counted at that text's max_tokens: above
    before = _tokens(demo["found"])
    assert len(before) >= 10
    for role, (estimated, reported, bound) in before.items():
        if bound:
            assert estimated >= reported, (role, estimated, reported)
        else:
            assert abs(estimated - reported) <= 0.25 * reported, (role, estimated, reported)
    # planned again with the answers there (state forgotten, so nothing counts as done): every
    # request is rendered whole, and every role is within 25 %
    out = tmp_path / "again"
    shutil.copytree(demo["out"], out)
    shutil.rmtree(out / "state")
    again = _tokens(plan_calls(_config(out))[0])
    assert set(again) == set(before)
    for role, (estimated, reported, _) in again.items():
        assert abs(estimated - reported) <= 0.25 * reported, (role, estimated, reported)
    estimated, reported = (sum(v[i] for v in again.values()) for i in (0, 1))
    assert reported > 10_000 and abs(estimated - reported) <= 0.10 * reported, (estimated, reported)


def test_a_half_done_run_plans_only_what_is_left(demo, tmp_path):
    out = tmp_path / "half"
    shutil.copytree(demo["out"], out)
    finished = plan_pipeline(_config(out))
    assert finished["steps"]["curate"] == finished["steps"]["judge"] == "up to date: nothing to pay"
    assert [r["stage"] for r in finished["rows"]] == ["evaluate"] * 3  # only M0 / M1 / M2 evaluation is left

    state = out / "state" / "distill.json"  # distill interrupted: its state says running, 5 replies kept
    state.write_text(state.read_text().replace('"complete"', '"running"'))
    results = out / "distill" / "generate" / "r1-sim.results.jsonl"
    kept = results.read_text().splitlines()[:5]
    results.write_text("\n".join(kept) + "\n")
    plan = plan_pipeline(_config(out), until="distill")
    rows = {r["role"]: r for r in plan["rows"]}
    teacher = rows["teacher[r1-sim]"]
    assert teacher["done"] == 5 and teacher["requests"] == [7, 7]  # 12 text questions kept, 5 answered
    assert teacher["usd_interactive"][0] > 0 and teacher["usd_batch"][0] == pytest.approx(teacher["usd_interactive"][0] / 2)
    assert rows["teacher[o1-sim]"]["requests"] == [0, 0] and rows["teacher[o1-sim]"]["done"] == 12
    text = format_plan(plan)
    assert "teacher[r1-sim]" in text and "5 already answered" in text and "TOTAL" in text
