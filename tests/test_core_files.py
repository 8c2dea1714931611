"""mede2_plugin.core.files: locked, atomic writes that keep links, modes and the JSON style."""

from __future__ import annotations

import json
import os
import stat

import pytest

from mede2_plugin.core.files import (
    JsonStyle,
    ReadOnlyFileError,
    atomic_write_text,
    atomic_writer,
    file_lock,
    read_json,
    update_json,
)

DATA = {"b": {"file_name": "b.jsonl", "columns": {"images": "images"}}, "a": {"file_name": "Größe ✓.json"},
        "n": [1, 2]}


@pytest.mark.parametrize("kwargs, trailing, newline", [
    ({"indent": 2, "ensure_ascii": False}, True, "\n"),
    ({"indent": 4, "ensure_ascii": True}, False, "\n"),
    ({"indent": "\t", "ensure_ascii": False}, True, "\n"),
    ({"indent": 2, "ensure_ascii": False, "separators": (",", ":")}, True, "\n"),
    ({"indent": None, "ensure_ascii": False}, False, "\n"),
    ({"indent": None, "ensure_ascii": True, "separators": (",", ":")}, True, "\n"),
    ({"indent": 2, "ensure_ascii": True}, True, "\r\n"),
], ids=["indent2", "indent4-ascii-no-newline", "tab", "indent2-tight", "one-line", "one-line-tight-ascii", "crlf"])
def test_json_style_is_detected_so_a_rewrite_reproduces_the_file(kwargs, trailing, newline):
    text = json.dumps(DATA, **kwargs) + ("\n" if trailing else "")
    text = text.replace("\n", newline)
    style = JsonStyle.detect(text, json.loads(text))
    assert style.dumps(DATA) == text


def test_update_json_keeps_style_and_key_order_and_appends_new_keys(tmp_path):
    path = tmp_path / "info.json"
    original = json.dumps(DATA, indent=4, ensure_ascii=True)  # no trailing newline
    path.write_text(original)
    update_json(path, lambda info: {**info, "new": {"file_name": "é.jsonl"}})
    text = path.read_text()
    assert text.startswith(original[: original.rindex("\n}")])  # every old line unchanged
    assert list(json.loads(text)) == ["b", "a", "n", "new"]
    assert "\\u00e9.jsonl" in text and not text.endswith("\n")


def test_update_json_returning_none_leaves_the_file_untouched(tmp_path):
    path = tmp_path / "info.json"
    path.write_text('{"x": 1}\n')
    before = path.stat().st_mtime_ns
    assert update_json(path, lambda info: None) == {"x": 1}
    assert path.stat().st_mtime_ns == before


def test_write_goes_through_a_symlink_and_keeps_the_mode(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    real = shared / "dataset_info.json"
    real.write_text('{"theirs": {"file_name": "t.json"}}\n')
    real.chmod(0o640)
    link = tmp_path / "project" / "dataset_info.json"
    link.parent.mkdir()
    link.symlink_to(real)
    update_json(link, lambda info: {**info, "ours": {"file_name": "o.json"}})
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert set(json.loads(real.read_text())) == {"theirs", "ours"}
    assert stat.S_IMODE(real.stat().st_mode) == 0o640
    assert sorted(p.name for p in shared.iterdir()) == ["dataset_info.json", "dataset_info.json.lock"]


def test_a_new_file_gets_the_mode_of_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        path = atomic_write_text(tmp_path / "new.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


@pytest.mark.parametrize("via_link", [False, True])
def test_a_read_only_file_is_refused_and_left_unchanged(tmp_path, via_link):
    real = tmp_path / "dataset_info.json"
    real.write_text('{"theirs": {}}\n')
    real.chmod(0o444)
    path = real
    if via_link:
        path = tmp_path / "link.json"
        path.symlink_to(real)
    called = []
    with pytest.raises(ReadOnlyFileError, match=r"read-only \(mode 0444\).*chmod u\+w"):
        update_json(path, lambda info: called.append(1) or {"new": {}})
    assert not called and real.read_text() == '{"theirs": {}}\n' and stat.S_IMODE(real.stat().st_mode) == 0o444


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_writer(path, text=True) as handle:
        handle.write("half")
        raise RuntimeError("disk gone")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_lock_excludes_a_second_holder_until_released(tmp_path):
    path = tmp_path / "info.json"
    with file_lock(path), pytest.raises(TimeoutError, match="info.json.lock"), file_lock(path, timeout=0.2):
        pass
    with file_lock(path, timeout=0.2):
        pass


def test_broken_json_names_file_line_and_column(tmp_path):
    path = tmp_path / "info.json"
    path.write_text('{\n  "a": 1,\n  "b" 2\n}\n')
    with pytest.raises(ValueError, match=r"info.json: not valid JSON \(Expecting ':' delimiter at line 3, column 7\)"):
        read_json(path)
    path.write_bytes(b'{"a": "\xff"}')
    with pytest.raises(ValueError, match="info.json: not UTF-8 text"):
        update_json(path, lambda info: info)

