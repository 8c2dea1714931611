"""One typed config style: every stage loads one documented dataclass from YAML (``-c``) with
``--set`` overrides and key-path flags, and a pipeline file is checked, key by key, at load."""

from __future__ import annotations

import json

import pytest
import yaml
from mmrp_helpers import ALL_YES, make_image, question_dict, write_questions
from test_data_helpers import write_medxpertqa

from mede2_plugin.cli import main
from mede2_plugin.core.resources import examples_dir
from mede2_plugin.core.settings import ConfigError
from mede2_plugin.pipeline.config import load_pipeline_config
from mede2_plugin.testing import FakeOpenAIServer, prompt_text

DEMO = examples_dir() / "demo" / "pipeline.yaml"


@pytest.mark.parametrize("section, typo, path", [
    ("judge", {"max_atempts": 3}, "judge.max_atempts"),
    ("rollout", {"num_candidate": 8}, "rollout.num_candidate"),
    ("curate", {"difficulty": {"baselin": None}}, "curate.difficulty.baselin"),
    ("distill", {"filter": {"min_reasoning_char": 10}}, "distill.filter.min_reasoning_char"),
    ("pairs", {"pairs_per_questions": 2}, "pairs.pairs_per_questions"),
    ("evaluate", {"sample": 2}, "evaluate.sample"),
    ("training", {"stage1": {"recipes": "x.yaml"}}, "training.stage1.recipes"),
])
def test_a_typo_in_any_pipeline_section_fails_at_load_with_its_key_path(tmp_path, capsys, section, typo, path):
    data = yaml.safe_load(DEMO.read_text())
    data[section] = {**(data.get(section) or {}), **typo}
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"unknown key\(s\) {path}\b"):
        load_pipeline_config(pipeline, config_dir=DEMO.parent)
    out = tmp_path / "run"
    assert main(["run", str(pipeline), "--out", str(out)]) == 2
    assert path in capsys.readouterr().err and not out.exists()  # nothing ran, nothing was written


def test_pipeline_sections_are_the_stages_typed_configs() -> None:
    from mede2_plugin.curate.config import CurateConfig
    from mede2_plugin.mmrp.judge import JudgeConfig
    from mede2_plugin.mmrp.rollout import RolloutConfig

    config = load_pipeline_config(DEMO, ["judge.max_attempts=5", "rollout.num_candidates=3"])
    assert isinstance(config.curate, CurateConfig) and isinstance(config.judge, JudgeConfig)
    assert isinstance(config.rollout, RolloutConfig)
    assert (config.judge.max_attempts, config.rollout.num_candidates, config.pairs.pairs_per_question) == (5, 3, 2)
    with pytest.raises(ConfigError, match="rollout.num_candidates must be >= 1|num_candidates must be >= 1"):
        load_pipeline_config(DEMO, ["rollout.num_candidates=0"])


# -- mede2 mmrp -c ----------------------------------------------------------------------------------

def _m1(body: dict, index: int) -> str:
    return f"<think>The image shows a dark square; wait, check it. So the answer is A.</think><answer>\\boxed{{{'AB'[index % 2]}}}</answer>"


def test_mmrp_runs_from_a_yaml_config_with_overrides_and_flags(tmp_path):
    image = make_image(tmp_path / "bank" / "scan.png")
    bank = write_questions(tmp_path / "bank" / "questions.jsonl", [question_dict(f"q{i}", image) for i in range(2)])
    with FakeOpenAIServer(reply=_m1) as m1, FakeOpenAIServer(reply=json.dumps(ALL_YES)) as judge:
        settings = {"mmrp": {
            "questions": str(bank), "work_dir": str(tmp_path / "work"), "out_dir": str(tmp_path / "data"),
            "m1_backend": {"backend": "openai", "model": "m1", "base_url": m1.base_url, "progress": False,
                           "cache_dir": "off"},
            "judge_backend": {"backend": "openai", "model": "judge", "base_url": judge.base_url, "progress": False,
                              "cache_dir": "off"},
            "rollout": {"num_candidates": 2, "max_tokens": 64}, "judge": {"use_response_schema": False},
            "pairs": {"positive_use": "all"}}}
        config = tmp_path / "mmrp.yaml"
        config.write_text(yaml.safe_dump(settings), encoding="utf-8")
        code = main(["mmrp", "-c", str(config), "--set", "pairs.pairs_per_question=1", "--num-candidates", "4"])
        sent_n = {call.body["n"] for call in m1.calls}
    assert code == 0
    assert sent_n == {4}  # the flag wins over the file
    pairs = [json.loads(line) for line in (tmp_path / "data" / "mede2_stage2.jsonl").read_text().splitlines()]
    assert len(pairs) == 2  # pairs_per_question=1 from --set, one per question
    assert (tmp_path / "work" / "judged.stats.json").is_file()
    assert main(["rollout", "-c", str(config), "--set", "rollout.num_candidate=2"]) == 2


# -- mede2 eval -c ----------------------------------------------------------------------------------

def _answer(body: dict, index: int) -> str:
    return "<think>\nfindings\n</think><answer>\n\\boxed{A}\n</answer>"


def test_eval_runs_from_a_yaml_config(tmp_path, capsys):
    write_medxpertqa(tmp_path / "data" / "MedXpertQA", "MM")
    with FakeOpenAIServer(reply=_answer) as server:
        settings = {"eval": {"benchmarks": [{"name": "medxpertqa_mm"}], "data_root": str(tmp_path / "data"),
                             "out": str(tmp_path / "eval"), "label": "mine", "samples": 2, "max_tokens": 64,
                             "model": {"backend": "openai", "model": "fake", "base_url": server.base_url,
                                       "progress": False, "cache_dir": "off"}}}
        config = tmp_path / "eval.yaml"
        config.write_text(yaml.safe_dump(settings), encoding="utf-8")
        assert main(["eval", "-c", str(config)]) == 0
        bodies = [call.body for call in server.calls]
    assert bodies and all(b["n"] == 2 and b["temperature"] == 0.5 and b["max_tokens"] == 64 for b in bodies)
    assert all("<think>" in prompt_text(b) for b in bodies)
    metrics = json.loads((tmp_path / "eval" / "mine" / "medxpertqa_mm" / "metrics.json").read_text())
    assert metrics["samples_per_question"] == 2 and metrics["model"] == "mine"
    assert main(["eval", "-c", str(config), "--set", "sampels=2"]) == 2
    assert "unknown key(s) sampels" in capsys.readouterr().err


def test_stage_flags_are_generated_from_the_config_fields(capsys):
    with pytest.raises(SystemExit):
        main(["mmrp", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    # help and default come from the dataclass field; the key path is shown
    assert "candidates sampled per question (the paper: 8) (default: 8) [rollout.num_candidates]" in text
    assert "--judge-model MODEL" in text and "[judge_backend.model]" in text and "--m1-timeout" in text
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "[samples]" in text and "--backend-config YAML" in text and "[model.engine_args]" in text


def test_backend_flags_follow_the_backend_dataclass(tmp_path):
    from mede2_plugin.core.stage_cli import field_at
    from mede2_plugin.mmrp.config import MMRPConfig

    kind, default, doc = field_at(MMRPConfig, "m1_backend.backend")
    assert default == "local" and "openai" in doc  # a backend section that is None until given
    assert field_at(MMRPConfig, "judge_backend.model")[1] == "gemini-2.5-pro"
    assert field_at(MMRPConfig, "rollout.num_candidates")[1:] == (8, "candidates sampled per question (the paper: 8).")


def test_flags_map_to_key_paths(tmp_path):
    import argparse

    from mede2_plugin.core.stage_cli import (
        BackendFlags,
        add_backend_flags,
        add_config_arguments,
        add_flags,
        flag,
        overrides_from_args,
    )
    from mede2_plugin.mmrp.config import MMRPConfig, load_mmrp_config

    parser = argparse.ArgumentParser()
    add_config_arguments(parser, "", "", media_key="rollout.allow_outside_media")
    add_flags(parser, MMRPConfig, [flag("--no-embed-images", key="rollout.embed_images", value=False,
                                        also=["judge.embed_images"]), flag("--criteria", key="pairs.criteria")])
    add_backend_flags(parser, MMRPConfig, BackendFlags("m1_backend", "m1"))
    args = parser.parse_args(["--no-embed-images", "--m1-model", "saves/m1", "--m1-timeout", "5",
                              "--m1-engine-arg", "template=qwen2_vl", "--prompt", "mmrp_judge=j.j2",
                              "--allow-outside-media", "--criteria", "Answer_Correctness"])
    overrides = overrides_from_args(args)
    assert set(overrides) >= {"rollout.embed_images=false", "judge.embed_images=false", 'm1_backend.model="saves/m1"',
                              "m1_backend.timeout_s=5.0", 'm1_backend.engine_args.template="qwen2_vl"',
                              'prompts.mmrp_judge="j.j2"', "rollout.allow_outside_media=true",
                              'pairs.criteria=["Answer_Correctness"]'}
    config = load_mmrp_config(None, [o for o in overrides if not o.startswith("prompts.")])
    assert (config.m1_backend.backend, config.m1_backend.model, config.m1_backend.timeout_s) == ("local", "saves/m1", 5.0)
    assert config.m1_backend.engine_args == {"template": "qwen2_vl"} and config.rollout.embed_images is False


def test_one_line_errors_and_debug(tmp_path, capsys, monkeypatch):
    bad = tmp_path / "q.jsonl"
    bad.write_text('{"id": "x"}\n', encoding="utf-8")
    assert main(["rollout", "--questions", str(bad), "--output", str(tmp_path / "r.jsonl"), "--m1-model", "m"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mede2 rollout: ") and f"{bad}:line 1" in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    with pytest.raises(ValueError, match="missing question fields"):
        main(["--debug", "rollout", "--questions", str(bad), "--output", str(tmp_path / "r.jsonl"), "--m1-model", "m"])
    monkeypatch.setenv("MEDE2_DEBUG", "1")
    with pytest.raises(ValueError, match="missing question fields"):
        main(["rollout", "--questions", str(bad), "--output", str(tmp_path / "r.jsonl"), "--m1-model", "m"])
    monkeypatch.delenv("MEDE2_DEBUG")
    assert main(["pairs", "--judged", str(tmp_path / "none.jsonl"), "--out-dir", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "none.jsonl" in err and len(err.strip().splitlines()) == 1
