"""[human review] A `mede2 run` rerun after a rewrite review re-applies the decisions: the review log
is an input of the curation stage, so the stage is redone (from the response cache, no new call)
instead of being skipped as up to date."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mede2_plugin.core.resources import examples_dir
from mede2_plugin.core.review_log import ReviewLog

pytestmark = pytest.mark.slow


def test_a_rewrite_review_redoes_curation_from_the_cache(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "mede2_plugin.cli", "run", str(examples_dir() / "demo" / "pipeline.yaml"),
               "--out", str(out), "--until", "curate"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    strip = out / "curate" / "medxpertqa_mm_demo" / "strip"
    asked = next(r for r in map(json.loads, (strip / "records.jsonl").read_text().splitlines()) if r.get("rewrite"))
    edited = "EDITED BY A REVIEWER: which finding explains the presentation?"
    ReviewLog(out / "review", "rewrites").append(asked["id"], "alice", decision="edit",
                                                 edited={"question": edited, "patient_info": ""})
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert again.returncode == 0, again.stdout[-3000:]
    assert "curate: inputs changed" in again.stdout and "curate: complete" in again.stdout
    line = next(line for line in again.stdout.splitlines() if "curate: complete" in line)
    assert "; 0 calls," in line  # every reply came from the response cache
    stage2 = {q["id"]: q for q in map(json.loads, (out / "curate" / "stage2_questions.jsonl").read_text().splitlines())}
    assert stage2[asked["id"]]["question"] == edited
    third = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert "curate: up to date, skipped" in third.stdout
