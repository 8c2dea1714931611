"""The README's flow into an existing LLaMA-Factory setup runs as written, and Stage II's DeepSpeed
needs are checked before anything starts."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SECTION = "## Into an existing LLaMA-Factory setup"


def readme_flow() -> list[str]:
    """The commands of the README's first code block in SECTION, comments and installs left out."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```bash\n(.*?)```", text[text.index(SECTION):], re.S).group(1)
    commands = [re.sub(r"\s+#.*$", "", line).strip() for line in block.splitlines()]
    return [c for c in commands if c and not c.startswith("pip ")]


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "HF_HUB_OFFLINE": "1", **extra}


@pytest.mark.slow
def test_readme_flow_runs_verbatim_on_the_tiny_model(tmp_path, tiny_model_dir):
    """Each README line runs as written; only the model path, the precision (no bf16 on this CPU) and
    the step count are added, as key=value overrides. Stage II runs on DeepSpeed ZeRO-3 on one CPU
    rank (DS_ACCELERATOR=cpu; NPROC_PER_NODE because a CPU has no GPUs to count)."""
    tiny = shutil.copytree(tiny_model_dir, tmp_path / "models" / "tiny")
    overrides = {"recipes/stage1_lora.yaml": f"model_name_or_path={tiny} bf16=false max_steps=1",
                 "recipes/stage1_merge.yaml": f"model_name_or_path={tiny}",
                 "recipes/stage2_dpo.yaml": "bf16=false max_steps=1"}
    commands = readme_flow()
    assert commands[0].startswith("mede2 resources ./mede2 && cd mede2"), commands
    recipes = [c.split()[-1] for c in commands if "llamafactory-cli" in c]
    assert recipes == list(overrides), "the README's flow changed: update this test's overrides"
    script = "\n".join(["set -euo pipefail"] + [c + (" " + overrides[c.split()[-1]] if "llamafactory-cli" in c else "")
                                                for c in commands])
    start = time.monotonic()
    result = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=1500,
                            env=_env(DS_ACCELERATOR="cpu", NPROC_PER_NODE="1", MASTER_PORT=str(free_port())))
    elapsed = time.monotonic() - start
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-5000:])
    print(f"README flow: {elapsed:.0f} s")
    saves = tmp_path / "mede2" / "saves" / "qwen2_5vl-7b" / "mede2"
    assert (saves / "stage1_lora" / "adapter_model.safetensors").is_file()
    assert (saves / "m1" / "config.json").is_file()
    log = (saves / "m2" / "trainer_log.jsonl").read_text()
    assert '"loss"' in log or '"current_steps": 1' in log
    assert "Detected DeepSpeed ZeRO-3" in result.stdout + result.stderr  # Stage II really ran on ZeRO-3


def _resources(folder: Path) -> None:
    result = subprocess.run([str(BIN / "mede2"), "resources", str(folder)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr


def test_stage2_without_deepspeed_stops_before_starting_with_one_line(tmp_path):
    _resources(tmp_path / "mede2")
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text("import sys\nsys.modules['deepspeed'] = None  # as if not installed\n")
    start = time.monotonic()
    result = subprocess.run([str(BIN / "llamafactory-cli"), "train", "recipes/stage2_dpo.yaml"],
                            cwd=tmp_path / "mede2", capture_output=True, text=True, timeout=300,
                            env=_env(PYTHONPATH=str(shim), FORCE_TORCHRUN="1", NPROC_PER_NODE="2"))
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("[mede2] error: recipes/stage2_dpo.yaml trains with DeepSpeed")
    assert 'pip install "mede2-plugin[deepspeed]"' in last
    assert "Traceback" not in result.stderr and "torchrun" not in result.stdout + result.stderr
    assert time.monotonic() - start < 120


def test_a_deepspeed_config_missing_from_the_working_folder_is_named(tmp_path):
    _resources(tmp_path / "mede2")
    result = subprocess.run([str(BIN / "llamafactory-cli"), "train", "mede2/recipes/stage2_dpo.yaml"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300, env=_env(FORCE_TORCHRUN="1"))
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert f"the DeepSpeed config recipes/ds_z3_config.json does not exist from {tmp_path}" in last
    # an override that points at it from here is taken, and the run goes on past the check
    from mede2_plugin.llamafactory_ext.preflight import deepspeed_problem, train_config

    argv = ["llamafactory-cli", "train", str(tmp_path / "mede2/recipes/stage2_dpo.yaml"),
            f"deepspeed={tmp_path / 'mede2/recipes/ds_z3_config.json'}"]
    assert deepspeed_problem(*train_config(argv)) is None


def test_resources_keeps_a_projects_own_files_and_entries(tmp_path, capsys):
    import json

    from mede2_plugin.cli import main

    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "data" / "dataset_info.json").write_text(json.dumps(
        {"alpaca_en": {"file_name": "alpaca_en.json"}, "mede2_stage1": {"file_name": "mine.jsonl",
                                                                         "formatting": "mede2_sft"}}, indent=4))
    (project / "recipes").mkdir()
    (project / "recipes" / "stage1_lora.yaml").write_text("# mine\n")
    assert main(["resources", str(project)]) == 0
    assert "kept your own ['mede2_stage1']" in capsys.readouterr().out
    info = json.loads((project / "data" / "dataset_info.json").read_text())
    assert list(info) == ["alpaca_en", "mede2_stage1", "mede2_stage2"]
    assert info["mede2_stage1"]["file_name"] == "mine.jsonl"
    assert (project / "data" / "stage2_sample.jsonl").is_file() and (project / "data" / "images").is_dir()
    assert not (project / "data" / "stage1_sample.jsonl").exists()
    assert (project / "recipes" / "stage1_lora.yaml").read_text() == "# mine\n"
    assert (project / "recipes" / "stage2_dpo.yaml").is_file()
