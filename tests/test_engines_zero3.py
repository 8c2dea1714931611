"""DeepSpeed ZeRO-3 for real: the recipes' ds_z3_config.json on two CPU ranks through
``llamafactory-cli train`` (torchrun), tiny Stage-I (LoRA, as the recipe) and Stage-II (full DPO
with images) for both MedE2 templates.

No flag tells the torchrun workers about MedE2: the ``mede2_*`` templates and the ``mede2_sft`` /
``mede2_pref`` formats reach them only through the installed ``.pth`` hook, so a run that
finishes proves the hook works in every rank. The saved models load back with transformers.
LoRA with ZeRO-3 is reported to hang (LLaMA-Factory #8151); the Stage-I run has a timeout that
turns a hang into a failure naming it. The workers exit through MedE2's clean worker exit (the
hook wraps ``run_exp``), which keeps a finished run from aborting in interpreter teardown.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import free_port
from engines_helpers import tiny_internvl_dir  # noqa: F401 - fixture

from mede2_plugin.resources_cli import copy_resources

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
TIMEOUT_S = 420


def train_zero3(workdir: Path, config: str, *overrides: str) -> tuple[str, float]:
    """``DS_ACCELERATOR=cpu FORCE_TORCHRUN=1 NPROC_PER_NODE=2 llamafactory-cli train CONFIG
    deepspeed=recipes/ds_z3_config.json ...``; returns the log and the wall time.

    Any non-zero exit fails, including the exit-time abort ("terminate called without an active
    exception") that ``mede2_plugin.llamafactory_ext.worker_exit`` exists to prevent; the workers
    run with ``PYTHONFAULTHANDLER=1`` so that such an abort would print every thread's stack.
    """
    text, wall, code = _launch(workdir, config, *overrides)
    assert code == 0, text[-5000:]
    assert "Detected DeepSpeed ZeRO-3" in text
    assert "Process rank: 0, world size: 2" in text and "Process rank: 1, world size: 2" in text
    assert all(f"[mede2] rank {rank}: run finished; exiting without interpreter teardown" in text
               for rank in (0, 1)), "a worker did not leave through the clean exit"
    print(f"\nZeRO-3 {config} {' '.join(overrides)}: {wall:.1f} s wall")
    return text, wall


def _launch(workdir: Path, config: str, *overrides: str) -> tuple[str, float, int]:
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "FORCE_TORCHRUN": "1", "NPROC_PER_NODE": "2",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "HF_HUB_OFFLINE": "1",
           "PYTHONFAULTHANDLER": "1",
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # torchrun comes from this venv
    env.pop("MEDE2_NO_AUTOLOAD", None)
    env.pop("MEDE2_CLEAN_EXIT", None)
    log_path = workdir / f"train-{time.monotonic_ns()}.log"
    start = time.monotonic()
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [str(BIN / "llamafactory-cli"), "train", config, "deepspeed=recipes/ds_z3_config.json", *overrides],
            cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            code = process.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # torchrun and both ranks
            process.wait()
            tail = log_path.read_text(errors="replace")[-3000:]
            pytest.fail(f"ZeRO-3 run of {config} {overrides} did not finish in {TIMEOUT_S} s (hang?):\n{tail}")
    wall = time.monotonic() - start
    return log_path.read_text(errors="replace"), wall, code


@pytest.fixture()
def workdir(tmp_path: Path, tiny_model_dir: Path) -> Path:
    copy_resources(tmp_path, ("examples", "recipes"))
    shutil.copytree(tiny_model_dir, tmp_path / "runs" / "tiny" / "base")
    return tmp_path


def test_stage1_lora_on_zero3_two_cpu_ranks(workdir: Path, tiny_model_dir: Path):
    """Stage-I as the recipe does it (LoRA), several optimizer steps with gradient accumulation and
    a checkpoint per step: the places a LoRA + ZeRO-3 hang would show up."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    out = "runs/z3/stage1_lora"
    train_zero3(workdir, "examples/tiny/stage1_lora.yaml", f"output_dir={out}", "num_train_epochs=2",
                "per_device_train_batch_size=1", "gradient_accumulation_steps=2", "save_strategy=steps",
                "save_steps=1")
    log = [json.loads(line) for line in (workdir / out / "trainer_log.jsonl").read_text().splitlines()]
    assert sum("loss" in row for row in log) == 2  # 4 records / (2 ranks x 1 x 2 accumulation) x 2 epochs
    assert (workdir / out / "checkpoint-2").is_dir()

    base = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    model = PeftModel.from_pretrained(base, workdir / out)
    lora_b = {n: p for n, p in model.named_parameters() if "lora_B" in n}
    assert lora_b and all(p.numel() > 0 for p in lora_b.values()), "ZeRO-3 saved empty LoRA tensors"
    assert any(p.abs().sum() > 0 for p in lora_b.values()), "LoRA B is still zero: nothing was trained"
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        tuned = model(input_ids=ids).logits
        with model.disable_adapter():
            plain = model(input_ids=ids).logits
    assert not torch.equal(tuned, plain)


@pytest.mark.parametrize("family", ["qwen2_vl", "internvl"])
def test_stage2_full_dpo_with_images_on_zero3_two_cpu_ranks(family: str, workdir: Path, tiny_model_dir: Path,
                                                            tiny_internvl_dir: Path):  # noqa: F811 - fixture
    from transformers import AutoModelForImageTextToText

    source, template = ((tiny_model_dir, "mede2_qwen2_vl") if family == "qwen2_vl"
                        else (tiny_internvl_dir, "mede2_intern_vl"))
    shutil.copytree(source, workdir / "runs" / "tiny" / "m1")
    out = workdir / "runs" / "z3" / "m2"
    train_zero3(workdir, "examples/tiny/stage2_dpo.yaml", f"template={template}", f"output_dir={out}",
                "per_device_train_batch_size=1")
    rows = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]
    assert sum("loss" in row and "accuracy" in row for row in rows) == 2  # DPO steps: 4 pairs / 2 ranks

    m2, info = AutoModelForImageTextToText.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["mismatched_keys"], info
    m1 = AutoModelForImageTextToText.from_pretrained(source)
    pairs = list(zip(m2.named_parameters(), m1.named_parameters()))
    assert all(a.shape == b.shape for (_, a), (_, b) in pairs)
    changed = [name for (name, a), (_, b) in pairs if not a.equal(b)]
    assert changed, "DPO on ZeRO-3 changed no weight"
    assert not any("visual" in n or "vision_tower" in n for n in changed), "the vision tower is frozen"
    assert (out / "chat_template.jinja").read_text() == (source / "chat_template.jinja").read_text()
