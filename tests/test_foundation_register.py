"""`mede2 register` (and every writer of dataset_info.json): no lost entries with two runs at once,
links, modes and the JSON style kept, files copied so that no path points into site-packages."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mede2_plugin.cli import main
from mede2_plugin.core.dataset_info import (
    RegistrationConflict,
    merge_dataset_info,
    read_dataset_info,
)

WORKER = """
import os, sys, time
from pathlib import Path
ready, go = Path(sys.argv[1]), Path(sys.argv[2])
from mede2_plugin.cli import main
ready.touch()
while not go.exists():
    time.sleep(0.001)
sys.exit(main(sys.argv[3:]))
"""


def _source(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True)
    (folder / f"{name}.jsonl").write_text('{"id": "1", "question": "Q?", "options": {"A": "x"}, "answer": "A", '
                                          '"reasoning": "r"}\n')
    (folder / "dataset_info.json").write_text(json.dumps({name: {"file_name": f"{name}.jsonl",
                                                                 "formatting": "mede2_sft"}}))
    return folder


def _start_together(commands: list[list[str]], tmp: Path) -> list[subprocess.CompletedProcess]:
    """Start real processes, wait until each has imported everything, then release them at once."""
    go = tmp / "go"
    go.unlink(missing_ok=True)
    procs, readies = [], []
    for index, args in enumerate(commands):
        ready = tmp / f"ready{index}"
        ready.unlink(missing_ok=True)
        readies.append(ready)
        procs.append(subprocess.Popen([sys.executable, "-c", WORKER, str(ready), str(go), *args],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    deadline = time.monotonic() + 120
    while not all(r.exists() for r in readies) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return results


def test_concurrent_registers_on_a_large_file_never_lose_an_entry_or_corrupt_it(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    theirs = {f"their_dataset_{i}": {"file_name": f"data/{i}.json", "formatting": "sharegpt",
                                     "columns": {"messages": "conversations", "images": "images"}}
              for i in range(20000)}
    (project / "dataset_info.json").write_text(json.dumps(theirs, indent=2) + "\n")
    assert (project / "dataset_info.json").stat().st_size > 2_000_000
    expected = set(theirs)
    for attempt in range(4):
        names = [f"mede2_try{attempt}_run{k}" for k in range(3)]
        commands = [["register", "--dataset-dir", str(project), "--from", str(_source(tmp_path / name, name))]
                    for name in names]
        results = _start_together(commands, tmp_path)
        for result in results:
            assert result.returncode == 0, result.stderr[-2000:]
            assert "added ['mede2_try" in result.stdout
        expected.update(names)
        info = json.loads((project / "dataset_info.json").read_text())  # never corrupt
        assert set(info) == expected, f"attempt {attempt}: lost {sorted(expected - set(info))}"
    leftovers = [p.name for p in project.iterdir() if p.name not in {"dataset_info.json", "dataset_info.json.lock"}]
    assert leftovers == []  # no temp file left behind


def test_register_writes_through_a_symlink_keeps_mode_and_refuses_read_only(tmp_path, capsys):
    shared = tmp_path / "shared" / "dataset_info.json"
    shared.parent.mkdir()
    shared.write_text('{"theirs": {"file_name": "t.json"}}\n')
    shared.chmod(0o664)
    project = tmp_path / "project"
    project.mkdir()
    (project / "dataset_info.json").symlink_to(shared)
    assert main(["register", "--dataset-dir", str(project)]) == 0
    assert (project / "dataset_info.json").is_symlink()
    assert {"theirs", "mede2_stage1", "mede2_stage2"} <= set(json.loads(shared.read_text()))
    assert stat.S_IMODE(shared.stat().st_mode) == 0o664

    frozen = tmp_path / "frozen"
    frozen.mkdir()
    (frozen / "dataset_info.json").write_text("{}\n")
    (frozen / "dataset_info.json").chmod(0o444)
    capsys.readouterr()
    assert main(["register", "--dataset-dir", str(frozen)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "dataset_info.json is read-only (mode 0444)" in err and "Traceback" not in err
    assert (frozen / "dataset_info.json").read_text() == "{}\n"
    assert stat.S_IMODE((frozen / "dataset_info.json").stat().st_mode) == 0o444


def test_register_keeps_the_targets_json_style(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    original = json.dumps({"identité": {"file_name": "données.json"}, "alpaca": {"file_name": "a.json"}},
                          indent=4, ensure_ascii=True)
    (project / "dataset_info.json").write_text(original)
    assert main(["register", "--dataset-dir", str(project)]) == 0
    text = (project / "dataset_info.json").read_text()
    assert text.startswith(original[: original.rindex("\n}")])
    assert text == json.dumps(json.loads(text), indent=4, ensure_ascii=True)
    assert list(json.loads(text)) == ["identité", "alpaca", "mede2_stage1", "mede2_stage2"]


def test_copy_brings_data_files_and_their_media_and_nothing_outside(tmp_path):
    from PIL import Image

    source = tmp_path / "source"
    (source / "sets" / "img").mkdir(parents=True)
    (source / "shared").mkdir()
    Image.new("RGB", (8, 8)).save(source / "sets" / "img" / "a.png")  # relative to the data file
    Image.new("RGB", (8, 8), (9, 9, 9)).save(source / "shared" / "b.png")  # relative to the dataset dir
    Image.new("RGB", (8, 8)).save(tmp_path / "secret.png")  # outside the source folder
    rows = [{"id": "p1", "prompt": "Look.", "images": ["img/a.png"], "chosen": "c", "rejected": "r"},
            {"id": "p2", "prompt": "Look.", "images": ["shared/b.png"], "chosen": "c", "rejected": "r"},
            {"id": "p3", "prompt": "Look.", "images": ["../../secret.png"], "chosen": "c", "rejected": "r"}]
    (source / "sets" / "prefs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    entries = {"prefs": {"file_name": "sets/prefs.jsonl", "formatting": "mede2_pref", "ranking": True}}
    (source / "dataset_info.json").write_text(json.dumps(entries))

    project = tmp_path / "project" / "data"
    report = merge_dataset_info(project, entries, source_dir=source, copy_files=True)
    copied = sorted(str(p.relative_to(project)) for p in report.copied)
    assert copied == ["sets/img/a.png", "sets/prefs.jsonl", "shared/b.png"]
    assert read_dataset_info(project)["prefs"] == entries["prefs"]
    assert not (tmp_path / "project" / "secret.png").exists()

    # a rerun copies nothing
    assert merge_dataset_info(project, entries, source_dir=source, copy_files=True).copied == []


def test_copy_refuses_to_overwrite_a_different_file(tmp_path):
    from PIL import Image

    source = tmp_path / "source"
    source.mkdir()
    Image.new("RGB", (8, 8)).save(source / "a.png")
    (source / "p.jsonl").write_text(json.dumps({"id": "p", "prompt": "x", "images": ["a.png"],
                                                "chosen": "c", "rejected": "r"}) + "\n")
    entries = {"p": {"file_name": "p.jsonl", "formatting": "mede2_pref", "ranking": True}}
    project = tmp_path / "project"
    project.mkdir()
    Image.new("RGB", (8, 8), (200, 0, 0)).save(project / "a.png")
    with pytest.raises(RegistrationConflict, match=r"files \['a.png'\] already exist with other content"):
        merge_dataset_info(project, entries, source_dir=source, copy_files=True)
    assert read_dataset_info(project) == {} and not (project / "p.jsonl").exists()
    merge_dataset_info(project, entries, source_dir=source, copy_files=True, force=True)
    assert (project / "a.png").read_bytes() == (source / "a.png").read_bytes()


def test_copied_bundled_datasets_load_in_llamafactory_from_the_target_alone(tmp_path):
    from test_foundation_datasets import _aligned

    project = tmp_path / "project"
    assert main(["register", "--dataset-dir", str(project), "--copy"]) == 0
    info = read_dataset_info(project)
    assert info["mede2_stage2"]["file_name"] == "stage2_sample.jsonl"
    rows = _aligned(project, "mede2_stage2")
    assert len(rows) == 4
    assert all(Path(r["_images"][0]).resolve().is_relative_to(project.resolve()) for r in rows)
