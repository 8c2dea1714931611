"""End to end on a CPU: tiny M1 rollouts (local backend) -> judge (fake OpenAI-compatible server,
scripted verdicts) -> pairs -> ``llamafactory-cli train`` of a tiny image DPO."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
from mmrp_helpers import make_image, question_dict, write_questions

from mede2_plugin.client import BackendConfig
from mede2_plugin.core.jsonl import read_jsonl
from mede2_plugin.mmrp.judge import JudgeConfig, run_judge
from mede2_plugin.mmrp.pairs import PairingPolicy, write_preference_dataset
from mede2_plugin.mmrp.rollout import RolloutConfig, run_rollouts
from mede2_plugin.testing import FakeOpenAIServer, prompt_text

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


class ScriptedJudge:
    """The first candidate of each question to arrive passes all five criteria; the rest fail
    Reflection_Presence (hard negatives), every third also Logical_Consistency."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()
        self.lock = threading.Lock()

    def __call__(self, body: dict) -> str:
        text = prompt_text(body)
        question = text.split("<Question>\n", 1)[1].split("\n</Question>", 1)[0]
        with self.lock:
            self.seen[question] += 1
            order = self.seen[question]
        verdict = {"Answer_Correctness": "Yes", "Logical_Consistency": "Yes", "Image_Analysis_Involvement": "Yes",
                   "No_Hallucination": "Yes", "Reflection_Presence": "Yes"}
        if order > 1:
            verdict["Reflection_Presence"] = "No"
        if order % 3 == 0:
            verdict["Logical_Consistency"] = "No"
        return json.dumps(verdict)


def _train(config: dict, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    path = cwd / "dpo.yaml"
    path.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in config.items()))
    result = subprocess.run([str(BIN / "llamafactory-cli"), "train", str(path)], cwd=cwd, capture_output=True,
                            text=True, timeout=900, check=False, env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})})
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-5000:])
    return result


# A llamafactory-cli process registers mede2_judged when MedE2's import hook imports
# mede2_plugin.llamafactory_ext.judged; until the hook does, this sitecustomize (on PYTHONPATH) adds that import.
SITECUSTOMIZE = """
import mede2_plugin.llamafactory_ext as ext
_register = ext.register_converters
def register_converters():
    _register()
    import mede2_plugin.llamafactory_ext.judged  # registers mede2_judged, wraps align_dataset
ext.register_converters = register_converters
"""


def _dpo_config(model: Path, dataset: str, dataset_dir: Path, output_dir: Path) -> dict:
    return {
        "model_name_or_path": str(model), "image_max_pixels": 12544, "stage": "dpo", "do_train": True,
        "finetuning_type": "full", "freeze_vision_tower": True, "pref_beta": 0.1, "pref_loss": "sigmoid",
        "dataset": dataset, "dataset_dir": str(dataset_dir), "template": "mede2_qwen2_vl", "cutoff_len": 1024,
        "overwrite_cache": True, "preprocessing_num_workers": 1, "output_dir": str(output_dir),
        "logging_steps": 1, "save_strategy": "no", "overwrite_output_dir": True, "report_to": "none",
        "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1, "learning_rate": 1.0e-5,
        "max_steps": 2, "lr_scheduler_type": "cosine", "bf16": False,
    }


def test_rollout_judge_pairs_and_tiny_dpo(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-not-secret")
    media = tmp_path / "bank"
    make_image(media / "a.png", (220, 40, 40))
    make_image(media / "b.png", (40, 220, 40))
    bank = write_questions(media / "questions.jsonl", [
        question_dict("q1", "a.png", stripped="Which finding does the radiograph show?"),
        question_dict("q2", "b.png", answer="B"),
    ])

    # 1. rollouts from the tiny model on the local backend (LLaMA-Factory's HuggingFace engine)
    m1 = BackendConfig(backend="local", model=str(tiny_model_dir), batch_size=2, progress=False,
                       engine_args={"template": "mede2_qwen2_vl", "image_max_pixels": 12544})
    rollouts = tmp_path / "work" / "rollouts.jsonl"
    summary = run_rollouts(bank, rollouts, m1, RolloutConfig(num_candidates=4, max_tokens=24, seed=0))
    assert (summary.ok, summary.failed, summary.candidates) == (2, 0, 8), summary
    records = {r["id"]: r for r in read_jsonl(rollouts)}
    assert all(len({c["text"] for c in r["candidates"]}) > 1 for r in records.values())

    # 2. judge through a local OpenAI-compatible server; the random tiny model answers nothing
    #    right, so the paper's protocol (send_all) lets the scripted judge rate every candidate
    judge = ScriptedJudge()
    with FakeOpenAIServer(reply=judge) as server:
        judged = tmp_path / "work" / "judged.jsonl"
        result = run_judge(rollouts, judged, BackendConfig(backend="openai", model="fake-judge",
                                                           base_url=server.base_url, max_retries=0, progress=False),
                           JudgeConfig(send_all=True))
        assert server.call_count == 8
    assert (result.positives, result.negatives, result.unjudged) == (2, 6, 0)

    # 3. pairs: every combination, capped at 3 per question
    data = tmp_path / "data"
    report = write_preference_dataset(judged, data, PairingPolicy(positive_use="all", pairs_per_question=3),
                                      images="copy")
    assert report.pairs == 6 and report.pairs_with_hard_negative == 6
    pairs = list(read_jsonl(data / "mede2_stage2.jsonl"))
    assert all(p["images"] and (data / p["images"][0]).is_file() for p in pairs)

    # 4. a tiny full-parameter DPO with images on the native preference format
    out = tmp_path / "m2"
    _train(_dpo_config(tiny_model_dir, "mede2_stage2", data, out), tmp_path)
    log = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]
    assert any("loss" in row for row in log)
    assert json.loads((out / "train_results.json").read_text())["epoch"] > 0


def test_tiny_dpo_on_the_dynamic_judged_entry(tmp_path, tiny_model_dir):
    """``dataset: mede2_stage2_judged`` (pairs built at load time) through llamafactory-cli."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path / "site"), os.environ.get("PYTHONPATH")]))}
    from mmrp_helpers import candidate, judged_row, verdict

    from mede2_plugin.core.dataset_info import merge_dataset_info
    from mede2_plugin.core.jsonl import write_jsonl
    from mede2_plugin.mmrp.pairs import dataset_info_entries

    image = make_image(tmp_path / "media" / "scan.png")
    data = tmp_path / "data"
    write_jsonl(data / "judged.jsonl", [
        judged_row(f"q{i}", [candidate(0, verdict()), candidate(1, verdict(Reflection_Presence=False)),
                             candidate(2, verdict(No_Hallucination=False))], images=[image])
        for i in range(2)])
    entries = dataset_info_entries("mede2_stage2", "unused.jsonl", "unused_sharegpt.jsonl", "judged.jsonl",
                                   PairingPolicy(positive_use="all"))
    merge_dataset_info(data, {"mede2_stage2_judged": entries["mede2_stage2_judged"]})
    out = tmp_path / "m2"
    result = _train(_dpo_config(tiny_model_dir, "mede2_stage2_judged", data, out), tmp_path, env)
    output = result.stdout + result.stderr
    assert "Building MMRP preference pairs" in output
    assert "2 questions -> 4 preference pairs" in output
    assert re.search(r"Num examples = 4\b", output), output[-3000:]  # 2 questions x (1 positive x 2 negatives)
    assert any("loss" in json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines())
