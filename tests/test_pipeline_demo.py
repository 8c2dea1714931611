"""``mede2 demo`` end to end, and the reliability test: kill it anywhere, rerun, same result.

Both tests run the real demo (tiny model, llamafactory-cli training, simulated API roles) in a
subprocess. The clean run is shared. The killed run is SIGKILLed three times (mid-curation when
the simulated server has answered some calls, at the first MMRP judge call, and after a random
delay drawn with a fixed seed), then run to the end; it must give the clean run's outputs, with
no duplicate record in any JSONL file and no model call paid twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from mede2_plugin.core.resources import examples_dir

DEMO = examples_dir() / "demo" / "pipeline.yaml"
API_KEY = "sk-mede2demo-" + secrets.token_hex(16)
MAX_IN_FLIGHT = 8                      # BackendConfig.concurrency of the demo's API roles
COMPARED = ["curate/stage1_questions.jsonl", "curate/stage2_questions.jsonl", "distill/data/mede2_stage1.jsonl",
            "distill/data/dataset_info.json", "models/m1/model.safetensors", "rollout/rollouts.jsonl",
            "judge/judged.jsonl", "pairs/mede2_stage2.jsonl", "pairs/dataset_info.json",
            "models/m2/model.safetensors", "eval/M0/medxpertqa_mm/scored.jsonl",
            "eval/M1/medxpertqa_mm/scored.jsonl", "eval/M2/medxpertqa_mm/scored.jsonl",
            "eval/M2/medxpertqa_mm/metrics.json", "report/report.md", "report/report.csv"]

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    return {**os.environ, "OPENAI_API_KEY": API_KEY, "PYTHONUNBUFFERED": "1"}


def _command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mede2_plugin.cli", "run", str(DEMO), "--out", str(out), *extra]


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("pipeline") / "clean"
    done = subprocess.run([sys.executable, "-m", "mede2_plugin.cli", "demo", "--out", str(out)], env=_env(), check=False,
                          capture_output=True, text=True, timeout=900)
    return out, done


def _lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:   # a line torn by SIGKILL (moved aside when the file is reopened)
            pass
    return rows


def _jsonl_files(out: Path) -> list[Path]:
    return [p for p in out.rglob("*.jsonl") if "superseded" not in p.relative_to(out).parts]


def _rows(out: Path, simulated: bool, cached: bool) -> int:
    """Answered result rows, paid (``cached=False``) or from the response cache, of the API roles
    (``simulated``) or of the local models."""
    count = 0
    for path in _jsonl_files(out):
        if not (path.name.endswith(".results.jsonl") or path.name == "generations.jsonl"):
            continue
        for row in _lines(path):
            if row.get("error") is None and bool(row.get("cached")) == cached and \
                    str(row.get("model", "")).startswith("simulated-") == simulated:
                count += 1
    return count


def _normalised(path: Path, out: Path) -> str:
    if path.suffix == ".safetensors":
        return hashlib.sha256(path.read_bytes()).hexdigest()
    return path.read_text(encoding="utf-8").replace(str(out.resolve()), "$OUT")


def test_demo_end_to_end(clean_run: tuple[Path, subprocess.CompletedProcess]) -> None:
    out, done = clean_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    stdout = done.stdout
    assert "SIMULATED (simulated-judge)" in stdout and "SIMULATED (simulated-reasoner)" in stdout
    for row in ("| M0 (base) |", "| M1 |", "| M2 |"):
        assert row in stdout
    plot = out / "report" / "report_scaling.png"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    manifest = json.loads((out / "manifest.json").read_text())
    stages = manifest["stages"]
    assert [s for s in stages if stages[s]["status"] != "complete"] == []
    assert set(stages) == {"prepare", "curate", "distill", "train_stage1", "rollout", "judge", "pairs",
                           "train_stage2", "evaluate", "report"}
    judge = stages["judge"]
    assert set(judge["inputs"]["templates"]) == {"prompts/mmrp_judge.j2", "prompts/mmrp_question.j2"}
    assert judge["models"][0]["model"] == "simulated-judge" and judge["models"][0]["simulated"]
    assert judge["usage"]["calls"] > 0 and judge["usage"]["cost_usd"] == 0.0
    assert stages["pairs"]["counts"]["pairs"] > 0
    assert all(h for h in stages["train_stage1"]["outputs"].values())
    assert manifest["environment"]["packages"]["llamafactory"]
    assert stages["curate"]["inputs"]["files"] and all(stages["curate"]["inputs"]["files"].values())
    for path in out.rglob("*"):          # the key the backends read never lands in any output
        if path.is_file() and path.stat().st_size < 50_000_000:
            assert API_KEY.encode() not in path.read_bytes(), path

    # a second run finds everything up to date: no stage runs, no call is made
    calls_before = len(_lines(out / "simulated" / "calls.jsonl"))
    again = subprocess.run(_command(out), env=_env(), check=False, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert again.stdout.count("up to date, skipped") == 10
    assert len(_lines(out / "simulated" / "calls.jsonl")) == calls_before


def _start(out: Path, log: Path) -> subprocess.Popen:
    handle = log.open("a")
    return subprocess.Popen(_command(out, "--set", "simulated.latency=0.2"), env=_env(), stdout=handle,
                            stderr=subprocess.STDOUT, start_new_session=True)


def _kill_when(process: subprocess.Popen, ready, timeout_s: float = 600) -> bool:
    """SIGKILL the run's whole process group once ``ready()``; False if it finished first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if ready():
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return True
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    raise TimeoutError("the run neither reached the kill point nor finished")


def test_demo_survives_kills(clean_run: tuple[Path, subprocess.CompletedProcess], tmp_path: Path) -> None:
    clean, done = clean_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out, log = tmp_path / "killed", tmp_path / "runs.log"
    calls_log = out / "simulated" / "calls.jsonl"
    delay = random.Random(6).uniform(1.0, 15.0)
    started: list[float] = []

    def received() -> list[dict]:
        return _lines(calls_log)

    kill_points = [
        lambda: len(received()) >= 25,                                     # mid-curation
        lambda: any(c.get("role") == "judge" for c in received()),         # at the first MMRP judge call
        lambda: time.monotonic() - started[-1] >= delay,                   # a random moment
    ]
    paid, killed = 0, 0
    for ready in kill_points:
        before_received, before_paid = len(received()), _rows(out, simulated=True, cached=False)
        process = _start(out, log)
        started.append(time.monotonic())
        was_killed = _kill_when(process, ready)
        in_run = len(received()) - before_received
        paid_in_run = _rows(out, simulated=True, cached=False) - before_paid   # calls this run completed
        if was_killed:
            killed += 1
            assert 0 <= in_run - paid_in_run <= MAX_IN_FLIGHT    # only the calls in flight at the kill are lost
        else:
            assert process.returncode == 0, log.read_text()[-3000:]
            assert in_run == paid_in_run
        paid += paid_in_run
    assert killed >= 2
    before_received = len(received())
    final = subprocess.run(_command(out), env=_env(), check=False, capture_output=True, text=True, timeout=900)
    assert final.returncode == 0, log.read_text()[-2000:] + final.stdout[-3000:] + final.stderr[-3000:]

    # no model call paid twice: the calls the killed runs completed, plus the calls of the last run,
    # plus the answers found in the response cache (paid before a kill, row not yet written) make
    # exactly the rows of a clean run, whose own cache hits are identical requests of one run that
    # shared one call (the response cache claims a request while its call is in flight)
    clean_calls = len(_lines(clean / "simulated" / "calls.jsonl"))
    clean_shared = _rows(clean, simulated=True, cached=True)
    final_calls = len(received()) - before_received
    cached = _rows(out, simulated=True, cached=True)
    assert paid + final_calls + cached == clean_calls + clean_shared
    assert cached <= MAX_IN_FLIGHT * killed + clean_shared
    assert len(received()) <= clean_calls + MAX_IN_FLIGHT * killed
    assert _rows(clean, simulated=True, cached=False) == clean_calls
    local = _rows(out, simulated=False, cached=False) + _rows(out, simulated=False, cached=True)
    assert local == _rows(clean, simulated=False, cached=False)           # every local-model request once
    assert Counter(c["request"] for c in _lines(calls_log)).keys() == \
        Counter(c["request"] for c in _lines(clean / "simulated" / "calls.jsonl")).keys()

    # no duplicate record in any JSONL file
    for path in _jsonl_files(out):
        ids = [row["id"] for row in _lines(path) if "id" in row]
        duplicated = [i for i, n in Counter(ids).items() if n > 1]
        assert duplicated == [], f"{path}: {duplicated[:5]}"

    # the same final outputs, byte for byte once the output folder's path is taken out
    for name in COMPARED:
        assert _normalised(out / name, out) == _normalised(clean / name, clean), name
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["runs"]) == 4 and manifest["runs"][-1]["status"] == "complete"
    assert API_KEY not in (out / "manifest.json").read_text()
