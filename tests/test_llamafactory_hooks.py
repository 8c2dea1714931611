"""Every LLaMA-Factory internal our hooks rely on is there; a future LLaMA-Factory that moves one
fails here, loudly, naming mede2-plugin, the hook and the internal."""

from __future__ import annotations

import types

import pytest

import mede2_plugin.llamafactory_ext as ext
from mede2_plugin import _autoload


def test_every_internal_our_hooks_rely_on_is_there() -> None:
    missing = ext.missing_internals()
    assert missing == [], "\n".join(missing)


def test_the_import_hook_watches_exactly_the_listed_modules() -> None:
    listed = set(ext.INTERNALS["import hook (mede2_plugin._autoload)"])
    assert set(_autoload._TARGETS) == listed
    assert all(hasattr(ext, hook) for hook in _autoload._TARGETS.values())


def test_a_moved_internal_is_named_with_the_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    import llamafactory.data.converter as converter

    monkeypatch.delattr(converter, "align_dataset")
    missing = ext.missing_internals()
    assert len(missing) == 1 and missing[0].startswith("mede2-plugin: its judged dataset (judged.py) relies on "
                                                        "LLaMA-Factory's llamafactory.data.converter:align_dataset")
    fake = types.ModuleType("llamafactory.data.template")
    monkeypatch.setitem(__import__("sys").modules, "llamafactory.data.template", fake)
    assert any("mede2_<base> templates" in line and "TEMPLATES" in line for line in ext.missing_internals())
