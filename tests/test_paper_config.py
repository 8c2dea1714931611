"""The paper's configuration (examples/paper): it loads as the typed config, and its ``--plan`` on
stand-in banks with the public releases' real sizes has the shape the paper's protocol says.

The stand-ins are written here in the public layouts (never read from a download): synthetic
questions of about the real length (random words, so no two overlap and the leakage check keeps
them all), with these row counts:

* MedQA US ``train.jsonl`` 10,178 and the 4-option test 1,273 (the MedQA release; the test size
  also in the benchmark table of mede2_plugin/evaluate/benchmarks.py);
* Medbullets op4 308 (the Medbullets release);
* MedXpertQA MM ``test.jsonl`` 2,000 and ``dev.jsonl`` 5 (the dataset card on Hugging Face:
  TsinghuaC3I/MedXpertQA, "MM: dev 5 rows, test 2k rows");
* MMMU health validation 150: 30 per subject for the five health subjects (MMMU's validation set
  holds 30 questions per subject; the paper's MMMU-Health accuracies are all multiples of 1/150);
* MMMU-Pro health ``standard (10 options)`` 286: not published per subject; 13 of the 16
  MMMU-Pro-Health accuracies of the paper's Table 1 are whole multiples of 1/286.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_data_helpers import mmmu_table, png_bytes

from mede2_plugin.core.resources import examples_dir
from mede2_plugin.core.settings import ConfigError
from mede2_plugin.pipeline.config import load_pipeline_config
from mede2_plugin.pipeline.plan import format_plan, plan_pipeline

PAPER = examples_dir() / "paper"
SIZES = {"medqa_train": 10178, "medqa_test": 1273, "medbullets": 308, "medxpertqa_mm_test": 2000,
         "medxpertqa_mm_dev": 5, "mmmu_health": 150, "mmmu_pro_health": 286}
HEALTH = ("Basic_Medical_Science", "Clinical_Medicine", "Diagnostics_and_Laboratory_Medicine", "Pharmacy",
          "Public_Health")
API_ROLES = ("baseline_solver", "strong_solver", "classifier", "rewriter", "teacher", "trace_judge", "judge")


def test_both_paper_configs_load_as_typed_configs():
    qwen = load_pipeline_config(PAPER / "pipeline.yaml")
    intern = load_pipeline_config(PAPER / "pipeline_internvl3.yaml")
    assert qwen.models.base == "Qwen/Qwen2.5-VL-7B-Instruct" and qwen.models.template == "mede2_qwen2_vl"
    assert intern.models.base == "OpenGVLab/InternVL3-8B-hf" and intern.models.template == "mede2_intern_vl"
    assert intern.training.stage1.recipe.endswith("recipes/internvl3_8b/stage1_lora.yaml")
    assert Path(intern.training.stage1.recipe).is_file() and Path(qwen.training.stage2.recipe).is_file()
    for config in (qwen, intern):  # the paper's figures, as the stage configs hold them
        assert config.roles.baseline_solver.model == "gpt-4o"
        assert [s.backend.model for s in config.curate.difficulty.strong] == ["gemini-2.5-pro"]
        assert config.curate.difficulty.strong[0].samples == 4 and config.curate.difficulty.min_strong_correct == 1
        assert sorted(config.roles.teachers) == ["deepseek-r1", "o1", "qwq-32b"]
        o1 = next(t for t in config.distill.teachers if t.name == "o1")
        assert o1.reasoning == "summary" and o1.expand_summary
        assert config.roles.judge.model == "gemini-2.5-pro" and config.judge.send_all
        assert config.rollout.num_candidates == 8 and config.roles.rollout["backend"] == "vllm"
        assert config.evaluate.samples == 32 and config.evaluate.temperature == 0.5
        assert {b.name for b in config.benchmarks} == {"medqa", "medbullets_op4", "medxpertqa_mm", "mmmu_health",
                                                       "mmmu_pro_health"}
        batch = {name for name, b in config.roles.api_roles() if b.mode == "batch"}
        assert {"baseline_solver", "judge", "teacher[o1]", "strong_solver[0]"} <= batch
        assert config.roles.teachers["deepseek-r1"].mode == "interactive"  # no provider batch API


@pytest.mark.parametrize("typo, where", [("judge:\n  max_atempts: 3\n", "max_atempts"),
                                         ("rollout:\n  num_candidate: 8\n", "num_candidate"),
                                         ("roles:\n  judge: {backend: gemini, model: x, mode: batched}\n", "mode")])
def test_a_wrong_key_in_the_paper_config_fails_at_load(tmp_path, typo, where):
    for name in ("pipeline.yaml", "pipeline_internvl3.yaml"):
        shutil.copy(PAPER / name, tmp_path / name)
    (tmp_path / "pipeline_internvl3.yaml").write_text((tmp_path / "pipeline_internvl3.yaml").read_text() + typo)
    with pytest.raises((ConfigError, ValueError), match=where):
        load_pipeline_config(tmp_path / "pipeline_internvl3.yaml")


# -- stand-in banks of the real sizes ------------------------------------------------------------

def _words(rng: random.Random, count: int) -> str:
    return " ".join("".join(rng.choices("abcdefghiklmnoprstuy", k=rng.randint(3, 11))) for _ in range(count))


def _options(rng: random.Random, letters: str) -> dict[str, str]:
    return {letter: _words(rng, rng.randint(2, 5)) for letter in letters}


def write_public_standins(root: Path, seed: int = 0) -> dict[str, int]:
    """The public releases' layouts under ``root`` with the row counts of :data:`SIZES`."""
    rng = random.Random(seed)
    medqa = root / "MedQA" / "data_clean" / "questions" / "US"
    (medqa / "4_options").mkdir(parents=True)
    for path, count, letters in ((medqa / "train.jsonl", SIZES["medqa_train"], "ABCDE"),
                                 (medqa / "4_options" / "phrases_no_exclude_test.jsonl", SIZES["medqa_test"], "ABCD")):
        rows = []
        for _ in range(count):
            options = _options(rng, letters)
            letter = rng.choice(letters)
            rows.append({"question": _words(rng, 115) + "?", "options": options, "answer": options[letter],
                         "answer_idx": letter, "meta_info": "step1"})
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    import csv

    (root / "Medbullets").mkdir()
    with (root / "Medbullets" / "medbullets_op4.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["link", "question", "opa", "opb", "opc", "opd", "answer_idx", "answer", "explanation"])
        for i in range(SIZES["medbullets"]):
            options = list(_options(rng, "ABCD").values())
            writer.writerow([f"https://example.org/{i}", _words(rng, 140) + "?", *options, "B", options[1], ""])
    xpert = root / "MedXpertQA"
    (xpert / "MM").mkdir(parents=True)
    (xpert / "images").mkdir()
    small = png_bytes(size=8)
    for split, count in (("test", SIZES["medxpertqa_mm_test"]), ("dev", SIZES["medxpertqa_mm_dev"])):
        rows = []
        for i in range(count):
            name = f"MM-{split}-{i}-a.png"
            if split == "dev":  # the training images are sent to the API roles: a typical size
                from PIL import Image

                Image.new("RGB", (1024, 768), (i * 40, 90, 90)).save(xpert / "images" / name)
            else:
                (xpert / "images" / name).write_bytes(small)
            options = _options(rng, "ABCDE")
            text = _words(rng, 150) + "? Answer Choices: " + " ".join(f"({k}) {v}" for k, v in options.items())
            rows.append({"id": f"MM-{split}-{i}", "question": text, "options": options, "label": "C",
                         "images": [name], "medical_task": "Diagnosis", "body_system": "Lymphatic",
                         "question_type": "Reasoning"})
        (xpert / "MM" / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    import pyarrow.parquet as pq

    def mmmu_rows(split: str, count: int, options: int) -> list[dict]:
        return [{"id": f"{split}_{HEALTH[i % 5]}_{i}", "question": _words(rng, 45) + " <image 1>?",
                 "options": repr(list(_options(rng, "ABCDEFGHIJ"[:options]).values())), "explanation": "",
                 "img_type": "['Photographs']", "answer": "A", "topic_difficulty": "Medium",
                 "question_type": "multiple-choice", "subfield": "x", "subject": HEALTH[i % 5], "images": [1]}
                for i in range(count)]

    validation = mmmu_rows("validation", SIZES["mmmu_health"], 5)
    for subject in HEALTH:
        (root / "MMMU" / subject).mkdir(parents=True)
        pq.write_table(mmmu_table([r for r in validation if r["subject"] == subject]),
                       root / "MMMU" / subject / "validation-00000-of-00001.parquet")
    pro = root / "MMMU_Pro" / "standard (10 options)"
    pro.mkdir(parents=True)
    rows = mmmu_rows("test", SIZES["mmmu_pro_health"], 10)
    for part in range(2):
        pq.write_table(mmmu_table(rows[part::2], pro=True), pro / f"test-0000{part}-of-00002.parquet")
    return dict(SIZES)


@pytest.fixture(scope="module")
def paper_plan(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("paper")
    for name in ("pipeline.yaml", "pipeline_internvl3.yaml"):
        shutil.copy(PAPER / name, folder / name)
    write_public_standins(folder / "data")
    config = load_pipeline_config(folder / "pipeline.yaml")
    config.output_dir = str(folder / "run")
    return folder, config, plan_pipeline(config)


@pytest.mark.slow
def test_the_paper_plan_on_the_public_sizes(paper_plan, capsys):
    _, _, plan = paper_plan
    rows = {(r["stage"], r["role"]): r for r in plan["rows"]}
    text_bank, image_bank = SIZES["medqa_train"], SIZES["medxpertqa_mm_dev"]
    # exact: the baseline solver answers every question once (the leakage check keeps all stand-ins)
    assert rows[("curate", "baseline_solver @medqa_us_train")]["requests"] == [text_bank, text_bank]
    assert rows[("curate", "baseline_solver @medxpertqa_mm_dev")]["requests"] == [image_bank, image_bank]
    # a range: the strong solver only for the baseline's misses, 4 samples each
    strong = rows[("curate", "strong_solver[0] @medqa_us_train")]
    assert strong["requests"] == [0, text_bank] and strong["samples"] == [0, 4 * text_bank]
    assert rows[("curate", "classifier @medxpertqa_mm_dev")]["requests"] == [0, image_bank]
    assert rows[("curate", "classifier @medqa_us_train")]["requests"] == [0, 0]  # text questions pass
    # teachers only for kept text questions: o1 once, R1 and QwQ twice; o1's summaries expanded
    for name, samples in (("o1", 1), ("deepseek-r1", 2), ("qwq-32b", 2)):
        row = rows[("distill", f"teacher[{name}]")]
        assert row["requests"] == [0, text_bank] and row["samples"] == [0, samples * text_bank]
    assert rows[("distill", "teacher[o1]:expand")]["requests"] == [0, text_bank]
    assert rows[("distill", "trace_judge")]["requests"] == [0, 5 * text_bank]
    # Stage-II: 8 rollouts per kept image question; the judge (send_all) sees every candidate
    assert rows[("rollout", "rollout (M1)")]["samples"] == [0, 8 * image_bank]
    judge = rows[("judge", "judge")]
    assert judge["requests"] == [0, 8 * image_bank] and judge["mode"] == "batch"
    assert any(f"{8 * image_bank} judge requests" in note for note in judge["notes"])
    # evaluation: M0, M1 and M2, 32 samples per benchmark question, on your GPUs
    for label in ("M0", "M1", "M2"):
        for name, size in (("medqa", SIZES["medqa_test"]), ("medbullets_op4", SIZES["medbullets"]),
                           ("medxpertqa_mm", SIZES["medxpertqa_mm_test"]), ("mmmu_health", SIZES["mmmu_health"]),
                           ("mmmu_pro_health", SIZES["mmmu_pro_health"])):
            row = rows[("evaluate", f"eval ({label}) {name}")]
            assert row["requests"] == [size, size] and row["samples"] == [32 * size] * 2 and not row["priced"]
    # dollars: every API role priced (QwQ-32B at 0: own GPUs), batch below interactive
    totals = plan["totals"]
    assert plan["warnings"] == []
    assert 0 < totals["usd_batch"][1] <= totals["usd_as_configured"][1] < totals["usd_interactive"][1]
    assert all(r["usd_interactive"] is not None for r in plan["rows"] if r["priced"])
    with capsys.disabled():  # the figures of the README's "Reproducing the paper"
        print("\n" + format_plan(plan))


@pytest.mark.slow
def test_the_plan_command_prints_and_writes_json(paper_plan, tmp_path):
    folder, _, _ = paper_plan
    yaml_file = folder / "pipeline_internvl3.yaml"
    done = subprocess.run([sys.executable, "-m", "mede2_plugin.cli", "run", str(yaml_file), "--plan", "--until",
                           "curate", "--out", str(tmp_path / "run"), "--plan-json", str(tmp_path / "plan.json")],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "TOTAL" in done.stdout and "baseline_solver @medqa_us_train" in done.stdout
    data = json.loads((tmp_path / "plan.json").read_text())
    assert {r["stage"] for r in data["rows"]} == {"curate"} and data["totals"]["requests"][0] == SIZES["medqa_train"] + 5
    assert not (tmp_path / "run").exists()  # a plan writes nothing into the run's folder
