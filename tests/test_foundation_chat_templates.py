"""A MedE2 template, and its tokenizer chat template, for every LLaMA-Factory template.

The chat templates are compared with LLaMA-Factory's own encoder as text here, for every template
LLaMA-Factory registers; tests/test_engines_drift.py compares token ids with the HF processor and
vLLM on tiny checkpoints of three families (Qwen2-VL, InternVL3, Gemma 3).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mede2_plugin.cli import main
from mede2_plugin.core.files import read_json
from mede2_plugin.llamafactory_ext import chat_template as module
from mede2_plugin.llamafactory_ext.chat_template import (
    UnsupportedTemplate,
    chat_template,
    check_chat_template,
    shipped_spec_path,
    template_spec,
)

BIN = Path(sys.executable).parent


def _bases() -> list[str]:
    from llamafactory.data.template import TEMPLATES

    return sorted(name for name in TEMPLATES if not name.startswith("mede2_"))


def test_every_llamafactory_template_gets_a_chat_template_that_renders_what_it_encodes():
    from llamafactory.data.template import (
        TEMPLATES,
        Llama2Template,
        ReasoningTemplate,
        Template,
    )

    checked, unsupported = [], []
    for base in _bases():
        if type(TEMPLATES[base]) in (Template, ReasoningTemplate, Llama2Template):
            try:
                assert check_chat_template(f"mede2_{base}") == [], base
                checked.append(base)
            except UnsupportedTemplate as err:  # chatglm2 numbers its rounds ({{idx}}); LLaMA-Factory 0.9.4 only
                assert "placeholder other than" in str(err), err
                unsupported.append(base)
        else:
            with pytest.raises(UnsupportedTemplate, match="its own class"):
                check_chat_template(f"mede2_{base}")
            unsupported.append(base)
    assert len(checked) > 100 and {"qwen2_vl", "intern_vl", "gemma3", "llama4", "llava"} <= set(checked)
    assert len(unsupported) <= 3, unsupported


def test_the_check_catches_a_chat_template_that_drifts(monkeypatch):
    """A template that renders an explicit empty system message as an empty turn (the old
    mede2_qwen2_vl.jinja) is caught: LLaMA-Factory encodes the default system prompt there."""
    right = chat_template("mede2_qwen2_vl")
    drifting = right.replace("{%- set system = system or spec.default_system -%}",
                             "{%- if not (messages and messages[0]['role'] == 'system') -%}"
                             "{%- set system = spec.default_system -%}{%- endif -%}")
    assert drifting != right
    monkeypatch.setattr(module, "chat_template", lambda name: drifting)
    problems = check_chat_template("mede2_qwen2_vl")
    assert problems and all("empty system" in p for p in problems)


@pytest.mark.parametrize("name", ["mede2_qwen2_vl", "mede2_intern_vl"])
def test_shipped_specs_are_the_derived_ones(name):
    shipped, _ = read_json(shipped_spec_path(name))
    assert shipped == template_spec(name), (
        f"regenerate: python -c \"from mede2_plugin.llamafactory_ext.chat_template import *; "
        f"from mede2_plugin.core.files import atomic_write_json; "
        f"atomic_write_json(shipped_spec_path('{name}'), template_spec('{name}'))\"")


def test_without_llamafactory_the_recipes_two_render_and_others_say_how(tmp_path):
    code = (
        "import json, sys\n"
        "sys.modules['llamafactory'] = None\n"  # as in the vLLM environment
        "from mede2_plugin.llamafactory_ext.chat_template import chat_template\n"
        "out = {'qwen': chat_template('mede2_qwen2_vl'), 'intern': chat_template('mede2_intern_vl')}\n"
        "try:\n"
        "    chat_template('mede2_gemma3')\n"
        "except KeyError as err:\n"
        "    out['gemma3'] = err.args[0]\n"
        "print(json.dumps(out))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout)
    assert out["qwen"] == chat_template("mede2_qwen2_vl") and out["intern"] == chat_template("mede2_intern_vl")
    assert "mede2 template --base gemma3 --out FILE" in out["gemma3"]


def test_template_command_checks_then_writes(tmp_path, capsys):
    out = tmp_path / "mede2_gemma3.jinja"
    assert main(["template", "--base", "gemma3", "--out", str(out)]) == 0
    assert out.read_text() == chat_template("mede2_gemma3")
    assert "template: mede2_gemma3" in capsys.readouterr().err
    model = tmp_path / "model"
    model.mkdir()
    (model / "tokenizer_config.json").write_text(json.dumps({"chat_template": "old", "x": 1}, indent=4))
    assert main(["template", "--base", "llava", "--model-dir", str(model)]) == 0
    assert (model / "chat_template.jinja").read_text() == chat_template("mede2_llava")
    config = (model / "tokenizer_config.json").read_text()
    assert json.loads(config) == {"chat_template": chat_template("mede2_llava"), "x": 1}
    assert config.startswith('{\n    "chat_template"')  # its style kept
    capsys.readouterr()
    assert main(["template", "--base", "no_such_template"]) == 2
    assert "no template 'no_such_template'" in capsys.readouterr().err
    if "glm4_7" in _bases():
        assert main(["template", "--base", "glm4_7"]) == 2


def test_tiny_model_help_lists_every_family():
    result = subprocess.run([str(BIN / "mede2"), "tiny-model", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    assert all(family in result.stdout for family in ("qwen2_vl", "internvl", "gemma3"))


def test_tiny_gemma3_loads_and_answers_an_image_prompt(tmp_path):
    import torch
    import transformers
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from mede2_plugin.core.chat_format import system_prompt
    from mede2_plugin.tiny_gemma3 import TOKENS_PER_IMAGE, build_tiny_gemma3

    if int(transformers.__version__.split(".")[0]) < 5:  # LLaMA-Factory 0.9.4 pins transformers 4.57
        pytest.skip(f"the tiny models are built with transformers 5 APIs; this environment has "
                    f"transformers {transformers.__version__} (see README, Compatibility)")
    path = build_tiny_gemma3(tmp_path / "gemma3")
    processor = AutoProcessor.from_pretrained(path)
    model, info = AutoModelForImageTextToText.from_pretrained(path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Where?"}]}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text.startswith("<bos><start_of_turn>user\n" + system_prompt() + "\n\n<start_of_image>Where?")
    inputs = processor(text=[text], images=[Image.new("RGB", (70, 50), (9, 90, 200))], return_tensors="pt")
    assert int((inputs["input_ids"] == model.config.image_token_index).sum()) == TOKENS_PER_IMAGE
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]
    assert os.path.getsize(path / "model.safetensors") < 4_000_000
