"""Two runs at once lose nothing (issue 13, section 3): one writer per output.

Real processes: while one ``mede2 batch`` (or ``mede2 run``) writes an output, a second one on the
same output is refused at once, naming the first (its pid and command); with ``--wait`` it waits,
then finds the work done: no row is written twice and no call is paid twice.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from client_helpers import raw_rows

from mede2_plugin.core.jsonl import JsonlStore
from mede2_plugin.core.locks import OutputBusy, lock_path
from mede2_plugin.core.resources import examples_dir
from mede2_plugin.testing import FakeOpenAIServer

ENV = {**os.environ, "MEDE2_WAIT": "", "PYTHONUNBUFFERED": "1"}


def _wait_for_holder(target: Path, process: subprocess.Popen, timeout: float = 120.0) -> int:
    """The pid written into ``target``'s lock once the process holds it."""
    path = lock_path(target)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            pid = json.loads(path.read_text() or "{}").get("pid")
        except (OSError, ValueError):
            pid = None
        if pid:
            return pid
        time.sleep(0.05)
    raise AssertionError(f"{target} was never locked")


def test_second_writer_of_a_jsonl_store_is_refused_in_process(tmp_path):
    path = tmp_path / "out.jsonl"
    code = "from mede2_plugin.core.jsonl import JsonlStore; import time; s = JsonlStore(%r); time.sleep(30)" % str(path)
    holder = subprocess.Popen([sys.executable, "-c", code], env=ENV)
    try:
        pid = _wait_for_holder(path, holder)
        with pytest.raises(OutputBusy, match=rf"out.jsonl is being written by process {pid} .*--wait"):
            JsonlStore(path)
    finally:
        holder.kill()
        holder.wait()
    with JsonlStore(path) as store:  # the holder died: the lock went with it
        store.append({"id": "a"})


def _batch(tmp_path: Path, server: FakeOpenAIServer, *extra: str) -> list[str]:
    requests = tmp_path / "requests.jsonl"
    if not requests.exists():
        requests.write_text("".join(json.dumps({"id": f"q{i}", "messages": [{"role": "user", "content": f"q{i}"}]})
                                    + "\n" for i in range(6)), encoding="utf-8")
    return [sys.executable, "-m", "mede2_plugin.cli", "batch", "--input", str(requests),
            "--output", str(tmp_path / "out.jsonl"), "--backend", "openai", "--model", "fake",
            "--base-url", server.base_url, "--concurrency", "1", "--no-progress", "--cache-dir", "off", *extra]


def test_two_batches_on_one_output_the_second_is_refused_or_waits(tmp_path):
    with FakeOpenAIServer(reply="ok", latency=0.4) as server:
        first = subprocess.Popen(_batch(tmp_path, server), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
        pid = _wait_for_holder(tmp_path / "out.jsonl", first)
        refused = subprocess.run(_batch(tmp_path, server), env=ENV, capture_output=True, text=True, timeout=60)
        waiting = subprocess.Popen(_batch(tmp_path, server, "--wait"), env=ENV, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        assert first.wait(timeout=120) == 0, first.communicate()
        out, err = waiting.communicate(timeout=120)
        calls = server.call_count
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert f"being written by process {pid} (`" in refused.stderr and "batch" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert waiting.returncode == 0, err
    assert f"waiting for process {pid}" in err and json.loads(out)["skipped"] == 6
    ids = [row["id"] for row in raw_rows(tmp_path / "out.jsonl")]
    assert Counter(ids) == {f"q{i}": 1 for i in range(6)} and calls == 6  # no row, no call twice


@pytest.mark.slow
def test_two_runs_on_one_folder_the_second_is_refused_or_waits(tmp_path):
    out = tmp_path / "run"
    demo = [sys.executable, "-m", "mede2_plugin.cli", "run", str(examples_dir() / "demo" / "pipeline.yaml"),
            "--out", str(out), "--until", "curate"]
    first = subprocess.Popen([*demo, "--set", "simulated.latency=0.3"], env=ENV, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    pid = _wait_for_holder(out / "state" / "run", first)
    refused = subprocess.run(demo, env=ENV, capture_output=True, text=True, timeout=300)
    waiting = subprocess.run([*demo, "--wait"], env=ENV, capture_output=True, text=True, timeout=900)
    log, _ = first.communicate(timeout=900)
    assert first.returncode == 0, log[-3000:]
    assert refused.returncode == 2 and f"being written by process {pid}" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert waiting.returncode == 0 and "curate: up to date, skipped" in waiting.stdout, waiting.stdout[-2000:]
    for results in (out / "curate").rglob("*.results.jsonl"):
        ids = [row["id"] for row in raw_rows(results)]
        assert len(ids) == len(set(ids)), results
