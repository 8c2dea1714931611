"""Every bad input of ``mede2 batch`` is one line naming the file and line, exit 2, before any call.

Each case runs the real command line (``mede2_plugin.cli.main``, or a subprocess where the file
system must misbehave) against the fake server and checks: exit status 2, one line on stderr, no
traceback, the file and line (or flag, or variable) named, the existing output file byte for byte
as it was, and no call received by the server.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from client_helpers import echo_reply, final_rows

from mede2_plugin.cli import main as mede2_main
from mede2_plugin.testing import FakeOpenAIServer

GOOD = {"id": "a", "messages": [{"role": "user", "content": "hello"}]}
EXISTING_ROW = {"id": "old", "samples": [{"text": "kept", "reasoning": None, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1}, "cost_usd": 0.0, "cached": False,
                "backend": "openai", "model": "fake-model", "stage": "batch", "error": None}


def jsonl(*records: object) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in records)


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@dataclass
class Case:
    """One bad input: the request file's bytes, extra flags, what the one line must say."""

    name: str
    requests: bytes
    expect: str  # a regex the error line must match ({input}, {output}, {tmp} are filled in)
    flags: list[str] = field(default_factory=list)
    prepare: Callable[[Path], None] | None = None  # makes the bad output/summary path in tmp_path
    output: str = "out/results.jsonl"
    base_url: bool = True  # send to the fake server (False: no --base-url, so a key is needed)
    progress: bool = False  # with the progress bar on


CASES = [
    Case("duplicate id, 1 and '1'", jsonl({**GOOD, "id": "1"}, GOOD, {**GOOD, "id": 1}),
         r"{input}:3: duplicate id '1', first on line 1"),
    Case("duplicate id", jsonl(GOOD, b"", GOOD), r"{input}:3: duplicate id 'a', first on line 1"),
    Case("id null", jsonl(GOOD, {**GOOD, "id": None}), r"{input}:2: 'id' must be a non-empty string.*None"),
    Case("id missing", jsonl({"messages": GOOD["messages"]}), r"{input}:1: a request needs 'id'"),
    Case("id a list", jsonl({**GOOD, "id": ["x"]}), r"{input}:1: 'id' must be a non-empty string"),
    Case("n a string", jsonl({**GOOD, "n": "3"}), r"{input}:1: request 'a': n must be an integer from 1 to 128, got '3' \(str\)"),
    Case("n zero", jsonl({**GOOD, "n": 0}), r"{input}:1: request 'a': n must be an integer from 1 to 128, got 0"),
    Case("n huge", jsonl({**GOOD, "n": 100000}), r"{input}:1: request 'a': n must be an integer from 1 to 128, got 100000"),
    Case("messages not a list", jsonl({**GOOD, "messages": "hello"}), r"{input}:1: request 'a': messages must be a non-empty list"),
    Case("message without role", jsonl({**GOOD, "messages": [{"content": "x"}]}), r"{input}:1: request 'a': message 1: role must be one of"),
    Case("unknown role", jsonl({**GOOD, "messages": [{"role": "bot", "content": "x"}]}), r"{input}:1: .*role must be one of .*'bot'"),
    Case("bad content part", jsonl({**GOOD, "messages": [{"role": "user", "content": [{"type": "text"}]}]}),
         r"{input}:1: request 'a': message 1: a content part must be"),
    Case("temperature a string", jsonl({**GOOD, "temperature": "hot"}), r"{input}:1: request 'a': temperature must be a number"),
    Case("unknown field", jsonl({**GOOD, "temprature": 0.5}), r"{input}:1: request 'a': unknown field\(s\) temprature"),
    Case("not JSON", jsonl(GOOD, b'{"id": "b", "messages": [}'), r"{input}:2: not valid JSON"),
    Case("not UTF-8", jsonl(GOOD, b'{"id": "b\xff\xfe", "messages": []}'), r"{input}:2: not UTF-8"),
    Case("not an object", jsonl(GOOD, b"[1, 2]"), r"{input}:2: expected a JSON object"),
    Case("missing API key", jsonl(GOOD), r"set the environment variable MEDE2_TEST_UNSET_KEY", base_url=False,
         flags=["--api-key-env", "MEDE2_TEST_UNSET_KEY"], progress=True),
    Case("budget, model without a price", jsonl(GOOD), r"budget_usd is set but model 'fake-model' has no price",
         flags=["--budget-usd", "1"]),
    Case("budget in batch mode, no batch price", jsonl(GOOD), r"model 'fake-model' has no batch price",
         flags=["--budget-usd", "1", "--mode", "batch", "--config", "{tmp}/priced.yaml"]),
    Case("timeout -1", jsonl(GOOD), r"--timeout: timeout_s must be positive, got -1", flags=["--timeout", "-1"]),
    Case("concurrency 0", jsonl(GOOD), r"--concurrency: concurrency must be an integer >= 1", flags=["--concurrency", "0"]),
    Case("batch mode on an engine", jsonl(GOOD), r"--mode: mode: batch needs a provider batch API",
         flags=["--mode", "batch", "--backend", "vllm"]),
    Case("output is a folder", jsonl(GOOD), r"--output {tmp}/out/results.jsonl: is a folder",
         prepare=lambda tmp: (tmp / "out/results.jsonl").mkdir(parents=True)),
    Case("output's folder is a file", jsonl(GOOD), r"--output {tmp}/blocker/results.jsonl: cannot write",
         prepare=lambda tmp: (tmp / "blocker").write_text("a file"), output="blocker/results.jsonl"),
    Case("corrupt line inside the output", jsonl(GOOD), r"{output}:2: not valid JSON",
         prepare=lambda tmp: write(tmp / "out/results.jsonl",
                                   jsonl(EXISTING_ROW, b'{"id": "x", "sam', {**EXISTING_ROW, "id": "y"}))),
    Case("summary is a folder", jsonl(GOOD), r"--summary {tmp}/report: is a folder",
         prepare=lambda tmp: (tmp / "report").mkdir(), flags=["--summary", "{tmp}/report"]),
]


def run_case(case: Case, tmp_path: Path, server: FakeOpenAIServer, capsys) -> tuple[int, str]:
    requests = tmp_path / "requests.jsonl"
    requests.write_bytes(case.requests)
    (tmp_path / "priced.yaml").write_text("backend: openai\nmodel: fake-model\nprices: {fake-model: {input: 1, output: 1}}\n")
    output = tmp_path / case.output
    if case.prepare is not None:
        case.prepare(tmp_path)
    else:  # an output with one row already
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(jsonl(EXISTING_ROW))
    before = output.read_bytes() if output.is_file() else None
    fill = {"tmp": str(tmp_path), "input": str(requests), "output": str(output)}
    argv = ["batch", "--input", str(requests), "--output", str(output), "--backend", "openai",
            "--model", "fake-model", "--cache-dir", str(tmp_path / "cache")] + ([] if case.progress else ["--no-progress"])
    if case.base_url:
        argv += ["--base-url", server.base_url]
    argv += [flag.format(**fill) for flag in case.flags]
    code = mede2_main(argv)
    err = capsys.readouterr().err
    assert re.search(case.expect.format(**{k: re.escape(v) for k, v in fill.items()}), err), err
    assert (output.read_bytes() if output.is_file() else None) == before  # the output is as it was
    return code, err


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line_naming_where_exit_2_nothing_sent(case, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MEDE2_TEST_UNSET_KEY", raising=False)
    with FakeOpenAIServer(reply=echo_reply) as server:
        code, err = run_case(case, tmp_path, server, capsys)
        assert server.call_count == 0  # nothing sent
    assert code == 2
    assert err.strip() and "\n" not in err.strip(), err  # one line
    assert "Traceback" not in err


def test_summary_into_a_missing_folder_is_created(tmp_path, capsys):
    requests = tmp_path / "requests.jsonl"
    requests.write_bytes(jsonl(GOOD))
    summary = tmp_path / "reports" / "new" / "summary.json"
    with FakeOpenAIServer(reply=echo_reply) as server:
        code = mede2_main(["batch", "--input", str(requests), "--output", str(tmp_path / "o.jsonl"), "--backend",
                           "openai", "--model", "m", "--base-url", server.base_url, "--no-progress",
                           "--summary", str(summary)])
    assert code == 0 and json.loads(summary.read_text())["succeeded"] == 1


# -- a file system that refuses writes: a read-only or full tmpfs of its own ------------------
def can_mount_private_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True)
    return probe.returncode == 0


needs_tmpfs = pytest.mark.skipif(not can_mount_private_tmpfs(),
                                 reason="needs `unshare -rm` to mount a private read-only or tiny tmpfs")


def batch_in_private_mount(mount: str, tmp_path: Path, server: FakeOpenAIServer, output: str, *extra: str,
                           options: str = "size=64k", fill: bool = False) -> subprocess.CompletedProcess:
    """``mede2 batch`` in a mount namespace where ``mount`` is a tmpfs with ``options``."""
    command = [sys.executable, "-m", "mede2_plugin.cli", "batch", "--input", str(tmp_path / "requests.jsonl"),
               "--output", output, "--backend", "openai", "--model", "fake-model", "--base-url", server.base_url,
               "--no-progress", *extra]
    script = f"mkdir -p {mount} && mount -t tmpfs -o {options} tmpfs {mount}"
    if fill:
        script += f" && (cat /dev/zero > {mount}/filler 2>/dev/null; true)"
    script += " && exec " + " ".join(f"'{c}'" for c in command)
    return subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})


@needs_tmpfs
@pytest.mark.parametrize("how", ["read-only", "full"])
def test_unwritable_or_full_output_folder_is_refused_before_any_call(how, tmp_path):
    (tmp_path / "requests.jsonl").write_bytes(jsonl(GOOD))
    mount = str(tmp_path / "mnt")
    with FakeOpenAIServer(reply=echo_reply) as server:
        done = batch_in_private_mount(mount, tmp_path, server, f"{mount}/results.jsonl", "--cache-dir",
                                      str(tmp_path / "cache"), options="ro" if how == "read-only" else "size=64k",
                                      fill=how == "full")
        assert server.call_count == 0
    assert done.returncode == 2, done.stderr
    err = done.stderr.strip()
    assert "\n" not in err and "Traceback" not in err
    assert f"--output {mount}/results.jsonl: " in err
    assert ("Read-only file system" in err) if how == "read-only" else ("No space left on device" in err)


@needs_tmpfs
def test_disk_full_in_the_middle_of_a_run_stops_with_one_line_and_a_rerun_pays_nothing_again(tmp_path):
    """The folder had room when the run began, then filled up: the run stops at the first row it
    cannot write, says so in one line, and the answers paid so far are in the cache (elsewhere)."""
    count, long_text = 24, "word " * 20000  # 100 KB per row: a 1.5 MB tmpfs takes about 15 rows
    (tmp_path / "requests.jsonl").write_bytes(jsonl(*({"id": f"q{i}", "messages": [{"role": "user", "content": f"q {i}"}]}
                                                      for i in range(count))))
    mount = str(tmp_path / "mnt")
    with FakeOpenAIServer(reply=lambda body: long_text) as server:
        done = batch_in_private_mount(mount, tmp_path, server, f"{mount}/results.jsonl", "--cache-dir",
                                      str(tmp_path / "cache"), "--concurrency", "1", options="size=1536k")
        paid = server.call_count
        assert done.returncode == 2, done.stderr
        err = done.stderr.strip()
        assert "\n" not in err and "Traceback" not in err and "No space left on device" in err
        assert f"{mount}/results.jsonl: cannot write the row of " in err
        assert 1 <= paid < count  # stopped early, not after paying for everything
        rerun = subprocess.run([sys.executable, "-m", "mede2_plugin.cli", "batch", "--input",
                                str(tmp_path / "requests.jsonl"), "--output", str(tmp_path / "results.jsonl"),
                                "--backend", "openai", "--model", "fake-model", "--base-url", server.base_url,
                                "--no-progress", "--cache-dir", str(tmp_path / "cache")],
                               capture_output=True, text=True, timeout=120)
        assert rerun.returncode == 0, rerun.stderr
        assert server.call_count == count  # the answers paid before the disk filled were not paid again
    assert json.loads(rerun.stdout)["cache_hits"] == paid
    assert len(final_rows(tmp_path / "results.jsonl")) == count
