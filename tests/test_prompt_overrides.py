"""Your own prompts: ``--prompt NAME=PATH`` or ``prompts: {NAME: PATH}`` renders your jinja file,
in the sandbox, instead of the packaged one; its hash is what reports, manifests and fingerprints
record, so a changed prompt redoes what depends on it."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest
from mmrp_helpers import ALL_YES, make_image, question_dict, write_questions

from mede2_plugin.cli import main
from mede2_plugin.core.prompts import prompt_overrides, render, template_hash
from mede2_plugin.core.resources import examples_dir
from mede2_plugin.testing import FakeOpenAIServer, prompt_text

MY_JUDGE = ("MY OWN JUDGE. Question: {{ question }}\nTruth: {{ groundtruth }}\nCandidate: {{ answer }}\n"
            "Reply with the five fields as JSON.")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_text(encoding="utf-8").encode("utf-8")).hexdigest()[:16]


def test_an_override_renders_the_users_file_and_hashes_it(tmp_path):
    mine = tmp_path / "system.j2"
    mine.write_text("You are my assistant.", encoding="utf-8")
    packaged = render("prompts/system.j2")
    with prompt_overrides({"system": str(mine)}):
        assert render("prompts/system.j2") == "You are my assistant."
        assert template_hash("prompts/system.j2") == _sha(mine)
    assert render("prompts/system.j2") == packaged  # only inside the block
    with pytest.raises(ValueError, match="no packaged template 'sytem'"):
        with prompt_overrides({"sytem": str(mine)}):
            pass
    with pytest.raises(FileNotFoundError, match="prompts.system"):
        with prompt_overrides({"system": str(tmp_path / "missing.j2")}):
            pass


def test_user_templates_render_in_the_sandbox(tmp_path):
    evil = tmp_path / "evil.j2"
    evil.write_text("{{ ''.__class__.__mro__[1].__subclasses__() }}", encoding="utf-8")
    with prompt_overrides({"system": str(evil)}), pytest.raises(jinja2.exceptions.SecurityError):
        render("prompts/system.j2")


def _m1(body: dict, index: int) -> str:
    return "<think>The image shows a dark square; wait, check. So the answer is A.</think><answer>\\boxed{A}</answer>"


def test_judge_prompt_override_changes_what_the_judge_is_sent(tmp_path):
    image = make_image(tmp_path / "bank" / "scan.png")
    bank = write_questions(tmp_path / "bank" / "questions.jsonl", [question_dict("q1", image)])
    mine = tmp_path / "my_judge.j2"
    mine.write_text(MY_JUDGE, encoding="utf-8")
    with FakeOpenAIServer(reply=_m1) as m1, FakeOpenAIServer(reply=json.dumps(ALL_YES)) as judge:
        common = ["--work-dir", str(tmp_path / "work"), "--judge-no-progress"]
        assert main(["rollout", "--questions", str(bank), "--output", str(tmp_path / "work" / "rollouts.jsonl"),
                     "--m1-backend", "openai", "--m1-model", "m1", "--m1-base-url", m1.base_url,
                     "--m1-cache-dir", "off", "--num-candidates", "1"]) == 0
        assert main(["judge", "--rollouts", str(tmp_path / "work" / "rollouts.jsonl"), *common[2:],
                     "--output", str(tmp_path / "work" / "judged.jsonl"), "--judge-backend", "openai",
                     "--judge-model", "j", "--judge-base-url", judge.base_url, "--judge-cache-dir", "off",
                     "--send-all", "--prompt", f"mmrp_judge={mine}"]) == 0
        texts = [prompt_text(call.body) for call in judge.calls]
    assert texts and all(t.startswith("MY OWN JUDGE. Question:") and "Truth: A. Mass" in t for t in texts)
    assert not any("You are an expert reasoning evaluator" in t for t in texts)


@pytest.mark.slow
def test_pipeline_prompt_override_reaches_the_manifest_and_redoes_the_stage(tmp_path):
    solver = tmp_path / "solver.j2"
    solver.write_text((examples_dir().parent / "templates" / "prompts" / "curate_solver.j2").read_text()
                      .replace("Answer the multiple-choice question above", "MY SOLVER: answer the question above"),
                      encoding="utf-8")
    out = tmp_path / "run"
    command = [sys.executable, "-m", "mede2_plugin.cli", "run", str(examples_dir() / "demo" / "pipeline.yaml"),
               "--out", str(out), "--until", "curate", "--prompt", f"curate_solver={solver}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    inputs = manifest["stages"]["curate"]["inputs"]
    assert inputs["templates"]["prompts/curate_solver.j2"] == _sha(solver)
    assert inputs["values"]["prompt_files"] == {"curate_solver": str(solver)}
    attempts = [json.loads(line) for line in (out / "curate" / "medqa_demo" / "difficulty" / "attempts.jsonl")
                .read_text().splitlines()]
    assert attempts and all(a["baseline"] for a in attempts)  # the simulated solvers still answered
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert "curate: up to date, skipped" in again.stdout
    solver.write_text(solver.read_text() + "\nThink step by step.", encoding="utf-8")
    changed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert changed.returncode == 0 and "curate: inputs changed" in changed.stdout, changed.stdout[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stages"]["curate"]["inputs"]["templates"]["prompts/curate_solver.j2"] == _sha(solver)
