"""Pipeline settings, stage settings built from roles, training recipes, simulated roles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mede2_plugin.core.questions import Question
from mede2_plugin.core.resources import examples_dir
from mede2_plugin.core.settings import ConfigError, to_plain
from mede2_plugin.core.stage import fingerprint_settings
from mede2_plugin.demo.simulated import (
    TEACHER_FORMATS,
    QuestionScript,
    SimulatedRoles,
    load_script,
)
from mede2_plugin.pipeline.config import SIMULATED, load_pipeline_config
from mede2_plugin.pipeline.state import ContentHasher
from mede2_plugin.pipeline.steps import Context, Layout, curate_config, distill_config
from mede2_plugin.train.llamafactory import (
    TrainingError,
    effective_recipe,
    last_checkpoint,
    run_llamafactory,
    write_recipe,
)

DEMO = examples_dir() / "demo" / "pipeline.yaml"


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_demo_config_loads_with_absolute_existing_paths() -> None:
    config = load_pipeline_config(DEMO)
    assert all(Path(bank.path).is_file() for bank in config.banks)
    assert Path(config.banks[1].options["images_dir"]).is_dir()
    assert Path(config.training.stage1.recipe).is_file() and Path(config.simulated.script).is_file()
    assert set(config.roles.teachers) == {"r1-sim", "o1-sim"}
    assert config.roles.teachers["r1-sim"].base_url == SIMULATED
    assert "judge" in config.simulated_roles() and config.models.build_tiny


def test_overrides_and_unknown_keys(tmp_path: Path) -> None:
    config = load_pipeline_config(DEMO, ["evaluate.samples=8", "roles.judge.model=simulated-judge-2"])
    assert config.evaluate.samples == 8 and config.roles.judge.model == "simulated-judge-2"
    with pytest.raises(ConfigError, match="evaluat"):
        load_pipeline_config(DEMO, ["evaluat.samples=8"])
    bad = _write(tmp_path / "p.yaml", "banks: [{path: x.jsonl, format: medqa}]\nmodels: {base: m}\n"
                                      "roles: {rollout: {backend: local, model: /some/where}}\n")
    with pytest.raises(ConfigError, match="leave out 'model'"):
        load_pipeline_config(bad)


def test_missing_pieces_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="banks"):
        load_pipeline_config(_write(tmp_path / "a.yaml", "models: {base: m}\n"))
    with pytest.raises(ConfigError, match="models.base"):
        load_pipeline_config(_write(tmp_path / "b.yaml", "banks: [{path: x.jsonl}]\n"))
    with pytest.raises(ConfigError, match="simulated.script"):
        load_pipeline_config(_write(tmp_path / "c.yaml", "banks: [{path: x.jsonl}]\nmodels: {base: m}\n"
                                                          "roles: {judge: {model: j, base_url: simulated}}\n"))
    with pytest.raises(ConfigError, match="api_key_env"):
        load_pipeline_config(_write(tmp_path / "d.yaml", "banks: [{path: x.jsonl}]\nmodels: {base: m}\n"
                                                          "roles: {judge: {model: j, api_key: sk-123}}\n"))


def test_roles_fill_the_stage_settings(tmp_path: Path) -> None:
    config = load_pipeline_config(DEMO)
    ctx = Context(config, Layout(tmp_path), ContentHasher())
    curate = to_plain(curate_config(ctx, config.banks[1], runtime=False))
    assert curate["difficulty"]["baseline"]["backend"]["model"] == "simulated-baseline-solver"
    strong = curate["difficulty"]["strong"][0]
    assert (strong["samples"], strong["temperature"]) == (4, 0.7)
    assert strong["backend"] == to_plain(config.roles.strong_solvers[0])
    assert curate["output_dir"] == str(tmp_path.resolve() / "curate" / "medxpertqa_mm_demo")
    leakage = curate["leakage"]["benchmarks"]
    assert leakage and leakage[0]["path"].endswith("MM/test.jsonl") and leakage[0]["format"] == "medxpertqa"
    distill = to_plain(distill_config(ctx, runtime=False))
    teachers = {t["name"]: t for t in distill["teachers"]}
    assert teachers["o1-sim"]["reasoning"] == "summary" and teachers["o1-sim"]["expand_summary"] is True
    assert teachers["r1-sim"]["backend"]["model"] == "simulated-reasoner"
    assert distill["filter"]["judge"]["model"] == "simulated-trace-judge"


def test_fingerprint_settings_leave_out_pacing_and_price() -> None:
    config = load_pipeline_config(DEMO, ["roles.judge.concurrency=2", "roles.judge.prices={x: {input: 1, output: 2}}"])
    plain = fingerprint_settings(config.roles.judge)
    assert "concurrency" not in plain and "prices" not in plain and plain["model"] == "simulated-judge"


def test_effective_recipe_precedence(tmp_path: Path) -> None:
    recipe = _write(tmp_path / "r.yaml", "learning_rate: 1.0e-4\nmodel_name_or_path: base\ndeepspeed: ds.json\n"
                                         "num_train_epochs: 3\n")
    _write(tmp_path / "ds.json", "{}")
    args = effective_recipe(recipe, {"learning_rate": 5e-3, "model_name_or_path": "mine", "num_train_epochs": None},
                            {"model_name_or_path": "/run/models/m0"})
    assert args["learning_rate"] == 5e-3 and args["model_name_or_path"] == "/run/models/m0"
    assert "num_train_epochs" not in args                                 # None removes a key
    assert args["deepspeed"] == str((tmp_path / "ds.json").resolve())     # found beside the recipe
    written = write_recipe(tmp_path / "out" / "t.yaml", args, recipe)
    assert "learning_rate: 0.005" in written.read_text()


def test_failed_training_names_its_log(tmp_path: Path) -> None:
    recipe = _write(tmp_path / "t.yaml", "stage: sft\n")
    with pytest.raises(TrainingError, match="exit 1"):
        run_llamafactory("train", recipe, tmp_path / "logs" / "t.log", launcher="/bin/false")
    assert "/bin/false train" in (tmp_path / "logs" / "t.log").read_text()


def test_run_names_every_missing_api_key_before_any_stage(tmp_path: Path) -> None:
    """A real judge (Gemini) and a real teacher (OpenAI) without their keys: ``mede2 run`` stops in
    one line naming both before anything runs (before, curation and distillation were paid for and
    the judge stage then failed on the missing key)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "OPENAI_API_KEY")}
    out = tmp_path / "run"
    command = [sys.executable, "-m", "mede2_plugin.cli", "run", str(DEMO), "--out", str(out),
               "--set", "roles.judge={backend: gemini, model: gemini-2.5-pro}",
               "--set", "roles.teachers.r1-sim={backend: openai, model: o3}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "judge role judge (gemini-2.5-pro) needs GEMINI_API_KEY" in lines[0]
    assert "distill role teacher[r1-sim] (o3) needs OPENAI_API_KEY" in lines[0]
    assert not (out / "models").exists() and not (out / "curate").exists()  # no stage ran, M0 not built
    assert not (out / "simulated" / "calls.jsonl").exists()  # no simulated role was called either
    # only the selected stages' keys are needed: curation alone runs without them
    result = subprocess.run(command + ["--until", "curate"], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    assert (out / "curate").is_dir() and not (out / "distill").exists()


def test_last_checkpoint(tmp_path: Path) -> None:
    assert last_checkpoint(tmp_path / "none") is None
    for step in (5, 40, 12):
        (tmp_path / f"checkpoint-{step}").mkdir()
    assert last_checkpoint(tmp_path).name == "checkpoint-40"


def _roles() -> SimulatedRoles:
    questions = [Question(id="q1", source="t", question="Which drug reverses opioid toxicity?",
                          options={"A": "Flumazenil", "B": "Naloxone", "C": "Atropine"}, answer="B",
                          metadata={"explanation": "Pinpoint pupils. Wait, let me check. So the answer is B."}),
                 Question(id="q2", source="t", question="Which nerve causes wrist drop?",
                          options={"A": "Radial", "B": "Ulnar"}, answer="A")]
    script = {"q1": QuestionScript(baseline="right", strong="never", wrong_teachers=["simulated-summarizer"])}
    return SimulatedRoles(questions, script)


def _body(model: str, text: str, **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def test_simulated_solvers_and_teachers_follow_the_script() -> None:
    roles = _roles()
    prompt = "Which drug reverses opioid toxicity?\nA. Flumazenil\nB. Naloxone\nC. Atropine"
    assert "\\boxed{B}" in roles(_body("simulated-baseline-solver", prompt), 0)
    assert "\\boxed{B}" not in roles(_body("simulated-strong-solver", prompt), 0)      # strong: never
    other = "Which nerve causes wrist drop?\nA. Radial\nB. Ulnar"
    assert "\\boxed{B}" in roles(_body("simulated-baseline-solver", other), 0)         # default: wrong
    assert "\\boxed{A}" in roles(_body("simulated-strong-solver", other), 0)           # right on try 1
    assert "\\boxed{A}" not in roles(_body("simulated-strong-solver", other), 1)
    text, reasoning = roles(_body("simulated-reasoner", prompt), 0)
    assert reasoning.startswith("Pinpoint pupils") and "\\boxed{B}" in text
    summary = roles(_body("simulated-summarizer", prompt), 0)
    assert "\\boxed{C}" in summary                                                      # scripted wrong teacher
    assert json.loads(roles(_body("simulated-classifier", prompt), 0))["category"] == "reasoning"
    assert roles(_body("simulated-nobody", prompt), 0).startswith("The simulated server has no script")


@pytest.mark.parametrize("form", TEACHER_FORMATS)
def test_simulated_teacher_formats_read_back_as_the_same_trace(form: str) -> None:
    from mede2_plugin.distill.traces import parse_reply

    questions = _roles().questions.values()
    roles = SimulatedRoles(list(questions), {}, teacher_formats={"simulated-reasoner": form})
    reply = roles(_body("simulated-reasoner", "Which drug reverses opioid toxicity?"), 0)
    text, reasoning = reply if isinstance(reply, tuple) else (reply, None)
    parsed = parse_reply({"text": text, "reasoning": reasoning}, "auto")
    assert (parsed.reasoning, parsed.final) == ("Pinpoint pupils. Wait, let me check. So the answer is B.",
                                                "The answer is \\boxed{B}.")
    assert ("<think>" in text) == (form == "think_answer") and ("<answer>" in text) == (form in ("answer_tags",
                                                                                              "think_answer"))


def test_demo_script_has_a_paper_format_teacher(tmp_path: Path) -> None:
    scripts, formats = load_script(examples_dir() / "demo" / "simulated_roles.yaml")
    assert formats == {"simulated-reasoner": "think_answer"} and scripts["medqa-train-2"].strong == "never"
    bad = tmp_path / "roles.yaml"
    bad.write_text("teacher_formats: {simulated-reasoner: xml}\n")
    with pytest.raises(ValueError, match="roles.yaml: teacher_formats .*must be one of"):
        load_script(bad)


def test_simulated_mmrp_judge_rules() -> None:
    from mede2_plugin.mmrp.judge import judge_prompt

    roles = _roles()
    question = {"question": "Which drug reverses opioid toxicity?", "options": {"A": "Flumazenil", "B": "Naloxone"},
                "answer": "B", "patient_info": ""}

    def verdict(candidate: str) -> dict:
        return json.loads(roles(_body("simulated-judge", judge_prompt(question, candidate)), 0))

    good = "<think>\nThe image shows pinpoint pupils. Wait, let me check: so the answer is B.\n</think><answer>\\boxed{B}</answer>"
    assert set(verdict(good).values()) == {"Yes"}
    wrong = good.replace("\\boxed{B}", "\\boxed{A}")
    assert verdict(wrong)["Answer_Correctness"] == "No" and verdict(wrong)["Logical_Consistency"] == "No"
    flat = "<think>\nNaloxone reverses opioids, so the answer is B.\n</think><answer>\\boxed{B}</answer>"
    assert verdict(flat)["Image_Analysis_Involvement"] == "No" and verdict(flat)["Reflection_Presence"] == "No"
    looping = "<think>\nthe image the image the image shows it. Wait.\n</think><answer>\\boxed{B}</answer>"
    assert verdict(looping)["No_Hallucination"] == "No"
