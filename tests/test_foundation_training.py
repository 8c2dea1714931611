"""The tiny CPU copies of the recipes run to the end through llamafactory-cli: SFT, merge, DPO."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mede2_plugin.resources_cli import copy_resources

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run([str(BIN / "llamafactory-cli"), *args], cwd=cwd, capture_output=True, text=True,
                            timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-4000:])
    return result


def test_tiny_stage1_lora_merge_and_stage2_dpo_with_images(tmp_path, tiny_model_dir):
    from transformers import AutoModelForImageTextToText

    copy_resources(tmp_path, ("examples", "recipes"))
    shutil.copytree(tiny_model_dir, tmp_path / "runs" / "tiny" / "base")

    _cli("train", "examples/tiny/stage1_lora.yaml", cwd=tmp_path)
    stage1 = json.loads((tmp_path / "runs/tiny/stage1_lora/train_results.json").read_text())
    assert stage1["train_loss"] > 0
    assert (tmp_path / "runs/tiny/stage1_lora/adapter_model.safetensors").is_file()

    _cli("export", "examples/tiny/stage1_merge.yaml", cwd=tmp_path)
    m1 = tmp_path / "runs/tiny/m1"
    assert (m1 / "chat_template.jinja").read_text() == (tiny_model_dir / "chat_template.jinja").read_text()

    _cli("train", "examples/tiny/stage2_dpo.yaml", cwd=tmp_path)
    log = [json.loads(line) for line in (tmp_path / "runs/tiny/m2/trainer_log.jsonl").read_text().splitlines()]
    assert any("loss" in row for row in log)
    m2 = AutoModelForImageTextToText.from_pretrained(tmp_path / "runs/tiny/m2")
    base = AutoModelForImageTextToText.from_pretrained(m1)
    changed = [n for (n, p), (_, q) in zip(m2.named_parameters(), base.named_parameters()) if not p.equal(q)]
    assert changed, "DPO updated no weight"
    assert not any("visual" in n for n in changed), "the vision tower is frozen in Stage-II"
