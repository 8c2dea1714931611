"""Skip / resume / redo decisions, content hashes and fingerprints of ``mede2 run``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mede2_plugin.core.stage import StageInputs
from mede2_plugin.pipeline.runner import _relative, select_stages
from mede2_plugin.pipeline.state import (
    COMPLETE,
    FRESH,
    INCOMPLETE,
    RESUME,
    SKIP,
    ContentHasher,
    StageStore,
    describe,
    fingerprint,
    json_hash,
)
from mede2_plugin.pipeline.steps import STAGE_NAMES


def _described(tmp_path: Path, hasher: ContentHasher, settings: dict | None = None,
               templates: list[str] | None = None) -> dict:
    return describe(StageInputs(files=[str(tmp_path / "in.jsonl")], settings=settings or {"k": 1},
                                templates=templates or ["prompts/system.j2"]), hasher)


def test_content_hash_follows_content_not_time(tmp_path: Path) -> None:
    hasher = ContentHasher(tmp_path / "hashes.json")
    path = tmp_path / "a.txt"
    path.write_text("one")
    first = hasher.path(path)
    os.utime(path, ns=(1, 1))                      # touched, same content: same hash
    assert hasher.path(path) == first
    path.write_text("two")
    assert hasher.path(path) != first
    assert hasher.path(tmp_path / "missing") is None


def test_folder_hash_sees_renames_and_ignores_temp_files(tmp_path: Path) -> None:
    hasher = ContentHasher()
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "w.bin").write_bytes(b"\x00\x01")
    base = hasher.path(folder)
    (folder / "w.bin.tmp").write_bytes(b"partial")
    assert hasher.path(folder) == base
    (folder / "w.bin").rename(folder / "v.bin")
    assert hasher.path(folder) != base


def test_hash_cache_is_kept_between_processes(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(b"x" * 1000)
    hasher = ContentHasher(tmp_path / "hashes.json")
    digest = hasher.path(path)
    hasher.save()
    cached = json.loads((tmp_path / "hashes.json").read_text())
    assert cached[str(path.resolve())][2] == digest


def test_fingerprint_changes_with_each_kind_of_input(tmp_path: Path) -> None:
    hasher = ContentHasher()
    (tmp_path / "in.jsonl").write_text('{"id": 1}\n')
    base = fingerprint(_described(tmp_path, hasher))
    assert fingerprint(_described(tmp_path, hasher)) == base
    assert fingerprint(_described(tmp_path, hasher, settings={"k": 2})) != base
    assert fingerprint(_described(tmp_path, hasher, templates=["prompts/question.j2"])) != base
    (tmp_path / "in.jsonl").write_text('{"id": 2}\n')
    assert fingerprint(_described(tmp_path, hasher)) != base


def test_decisions_skip_resume_fresh(tmp_path: Path) -> None:
    hasher = ContentHasher()
    store = StageStore(tmp_path, hasher)
    output = tmp_path / "out.jsonl"
    assert store.decide("curate", "fp1")[0] == FRESH            # never ran
    state = store.start("curate", "fp1", {})
    assert store.decide("curate", "fp1")[0] == RESUME           # killed while running
    output.write_text("a\n")
    store.finish(state, COMPLETE, [output])
    assert store.decide("curate", "fp1")[0] == SKIP             # done, inputs unchanged
    assert store.decide("curate", "fp2")[0] == FRESH            # inputs changed
    output.write_text("edited\n")
    assert store.decide("curate", "fp1")[0] == RESUME           # output no longer what was recorded
    output.unlink()
    assert store.decide("curate", "fp1")[0] == RESUME
    state = store.start("curate", "fp1", {})
    store.finish(state, INCOMPLETE, [])
    assert store.decide("curate", "fp1")[0] == RESUME           # pending items: run again


def test_supersede_moves_outputs_and_state_aside(tmp_path: Path) -> None:
    store = StageStore(tmp_path, ContentHasher())
    stage_dir = tmp_path / "judge"
    stage_dir.mkdir()
    (stage_dir / "judged.jsonl").write_text("x\n")
    store.finish(store.start("judge", "fp", {}), COMPLETE, [stage_dir / "judged.jsonl"])
    moved = store.supersede("judge", [stage_dir])
    assert moved is not None and not stage_dir.exists()
    assert (moved / "judge" / "judged.jsonl").read_text() == "x\n"
    assert (moved / "judge.json").exists() and store.load("judge") is None
    assert store.supersede("judge", [stage_dir]) is None        # nothing left to move


def test_select_stages_range_and_errors() -> None:
    assert [s.name for s in select_stages(None, None)] == STAGE_NAMES
    assert [s.name for s in select_stages("rollout", "pairs")] == ["rollout", "judge", "pairs"]
    with pytest.raises(ValueError, match="unknown stage"):
        select_stages("rollouts", None)
    with pytest.raises(ValueError, match="comes after"):
        select_stages("judge", "curate")


def test_paths_inside_the_output_folder_do_not_enter_fingerprints(tmp_path: Path) -> None:
    value = {"files": {f"{tmp_path}/a.jsonl": "h"}, "settings": {"out": f"{tmp_path}/x", "other": "/data/y"}}
    relative = _relative(value, str(tmp_path))
    assert relative == {"files": {"$OUT/a.jsonl": "h"}, "settings": {"out": "$OUT/x", "other": "/data/y"}}
    assert json_hash(_relative(value, str(tmp_path))) == json_hash(
        _relative(json.loads(json.dumps(value).replace(str(tmp_path), "/elsewhere")), "/elsewhere"))
