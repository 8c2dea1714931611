"""The package as users get it: the tiny model, the CLI, the recipes, a non-editable wheel install."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from mede2_plugin.core.resources import recipes_dir

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_tiny_model_loads_with_transformers_and_generates(tiny_model_dir):
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    assert sum(p.numel() for p in model.parameters()) < 2_000_000
    tokenizer = processor.tokenizer
    for token in ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|image_pad|>", "<|vision_end|>"):
        assert tokenizer.convert_tokens_to_ids(token) != tokenizer.unk_token_id
        assert len(tokenizer(token, add_special_tokens=False)["input_ids"]) == 1
    assert model.config.image_token_id == tokenizer.convert_tokens_to_ids("<|image_pad|>")
    text = processor.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                         add_generation_prompt=True)
    inputs = processor(text=[text], return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 4 or out[0, -1] == tokenizer.eos_token_id


def test_cli_help_lists_commands_and_each_command_has_help():
    result = subprocess.run([str(BIN / "mede2"), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for name in ("register", "tiny-model", "resources", "chat-template"):
        assert name in result.stdout
        sub = subprocess.run([str(BIN / "mede2"), name, "--help"], capture_output=True, text=True, timeout=120)
        assert sub.returncode == 0 and "usage: mede2 " + name in sub.stdout, sub.stderr


def test_chat_template_command_writes_the_template_into_a_checkpoint(tmp_path, tiny_model_dir):
    from transformers import AutoTokenizer

    from mede2_plugin.cli import main
    from mede2_plugin.llamafactory_ext.chat_template import chat_template

    target = tmp_path / "m1"
    target.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (target / name).write_bytes((tiny_model_dir / name).read_bytes())
    assert main(["chat-template", str(target)]) == 0
    assert AutoTokenizer.from_pretrained(target).chat_template == chat_template("mede2_qwen2_vl")


def _recipes() -> list[Path]:
    return sorted(recipes_dir().rglob("*.yaml"))


@pytest.mark.parametrize("recipe", _recipes(), ids=lambda p: str(p.relative_to(recipes_dir())))
def test_recipes_follow_the_paper_and_name_our_template_and_datasets(recipe):
    config = yaml.safe_load(recipe.read_text())
    assert config["template"] in {"mede2_qwen2_vl", "mede2_intern_vl"}
    assert recipe.read_text().startswith("#"), "each recipe says what it is and what to change"
    if "export_dir" in config:
        return
    if config["stage"] == "sft":
        assert (config["finetuning_type"], config["learning_rate"], config["dataset"]) == ("lora", 1e-4, "mede2_stage1")
    else:
        assert (config["stage"], config["learning_rate"], config["pref_loss"]) == ("dpo", 1e-6, "sigmoid")
        assert config["dataset"] == "mede2_stage2"
        assert config["finetuning_type"] == ("lora" if "_72b" in str(recipe) or "_32b" in str(recipe) else "full")
        ds = json.loads((REPO_ROOT / config["deepspeed"]).read_text())
        assert ds["zero_optimization"]["stage"] == 3
    assert config["lr_scheduler_type"] == "cosine"


@pytest.mark.slow
def test_stage1_recipe_from_a_clone_gets_as_far_as_loading_the_model(tmp_path):
    # bf16=false only because this machine has no GPU; the model id is unreachable offline.
    result = subprocess.run([str(BIN / "llamafactory-cli"), "train", "recipes/stage1_lora.yaml", "bf16=false",
                             f"output_dir={tmp_path / 'out'}"], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode != 0
    assert "Failed to load tokenizer." in result.stderr + result.stdout
    assert "Template mede2_qwen2_vl does not exist" not in result.stderr + result.stdout


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory):
    """A new venv holding only our built wheel, with the main env's packages on a plain path entry.

    A plain path in a .pth is added to sys.path without running that folder's own .pth files, so
    the editable install of the main env is not seen: this is a non-editable install of the wheel.
    """
    import site
    import sysconfig

    root = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(root / "dist"), str(REPO_ROOT)],
                   check=True, timeout=300)
    wheel = next((root / "dist").glob("mede2_plugin-*.whl"))
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True, timeout=120)
    python = root / "venv" / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
                   check=True, timeout=300)
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    main_site = sysconfig.get_paths()["purelib"]
    assert main_site in site.getsitepackages() or main_site
    (Path(purelib) / "zz_main_env.pth").write_text(main_site + "\n")
    return wheel, python


@pytest.mark.slow
def test_wheel_ships_hook_templates_recipes_and_examples(wheel_env):
    wheel, _ = wheel_env
    names = zipfile.ZipFile(wheel).namelist()
    assert "mede2_plugin_autoload.pth" in names
    for expected in ("mede2_plugin/templates/prompts/system.j2", "mede2_plugin/templates/chat/mede2.jinja",
                     "mede2_plugin/templates/chat/mede2_qwen2_vl.json", "mede2_plugin/templates/chat/mede2_intern_vl.json",
                     "mede2_plugin/recipes/stage1_lora.yaml", "mede2_plugin/recipes/ds_z3_config.json",
                     "mede2_plugin/examples/tiny/data/dataset_info.json"):
        assert expected in names


@pytest.mark.slow
def test_non_editable_install_registers_and_writes_resources(wheel_env, tmp_path):
    _, python = wheel_env
    code = (
        "import json, mede2_plugin\n"
        "from llamafactory.data.template import TEMPLATES\n"
        "from mede2_plugin.resources_cli import copy_resources\n"
        "n = len(copy_resources(%r))\n"
        "print(json.dumps({'file': mede2_plugin.__file__, 'ok': 'mede2_qwen2_vl' in TEMPLATES, 'n': n}))" % str(tmp_path)
    )
    result = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert str(REPO_ROOT) not in out["file"] and out["ok"] and out["n"] > 10
    assert (tmp_path / "recipes" / "stage2_dpo.yaml").is_file()
    assert (tmp_path / "examples" / "tiny" / "stage1_lora.yaml").is_file()


@pytest.mark.slow
def test_non_editable_register_copies_the_bundled_data_and_never_points_into_site_packages(wheel_env, tmp_path):
    _, python = wheel_env
    cli = [str(python), "-c", "import sys; from mede2_plugin.cli import main; sys.exit(main(sys.argv[1:]))"]
    project = tmp_path / "project"
    result = subprocess.run([*cli, "register", "--dataset-dir", str(project)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    text = (project / "dataset_info.json").read_text()
    assert "site-packages" not in text and ".." not in text
    for entry in json.loads(text).values():
        assert (project / entry["file_name"]).resolve().is_relative_to(project.resolve())
        assert (project / entry["file_name"]).is_file()
    assert (project / "images" / "scan_0.png").is_file()

    result = subprocess.run([*cli, "register", "--dataset-dir", str(tmp_path / "other"), "--link"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "inside an installed package" in result.stderr
    assert not (tmp_path / "other" / "dataset_info.json").exists()
