"""The .pth import hook registers MedE2 into LLaMA-Factory in any process, and costs nothing else."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def _run(code: str, **env: str) -> dict:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={**os.environ, **env})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_fresh_process_importing_only_llamafactory_sees_templates_and_formats():
    out = _run(
        "import json\n"
        "from llamafactory.data.template import TEMPLATES\n"
        "from llamafactory.data.converter import DATASET_CONVERTERS\n"
        "print(json.dumps({'templates': sorted(k for k in TEMPLATES if k.startswith('mede2')),"
        " 'bases': sorted(k for k in TEMPLATES if not k.startswith('mede2')),"
        " 'formats': sorted(k for k in DATASET_CONVERTERS if k.startswith('mede2')),"
        " 'system': TEMPLATES['mede2_qwen2_vl'].default_system,"
        " 'gemma3': TEMPLATES['mede2_gemma3'].default_system}))"
    )
    assert out["templates"] == sorted("mede2_" + base for base in out["bases"])  # one for every template
    assert {"mede2_qwen2_vl", "mede2_intern_vl", "mede2_gemma3"} <= set(out["templates"])
    assert out["gemma3"] == out["system"]
    assert {"mede2_sft", "mede2_pref"} <= set(out["formats"])
    assert out["system"].startswith("You are a helpful assistant. A conversation between User and Assistant.")
    assert "<think> </think> and <answer> </answer>" in out["system"]


def test_hook_is_lazy_in_processes_that_never_import_llamafactory():
    out = _run(
        "import json, sys\n"
        "print(json.dumps({'finder': any(type(f).__name__ == '_Finder' for f in sys.meta_path),"
        " 'heavy': sorted(m for m in ('llamafactory', 'torch', 'transformers', 'jinja2',"
        " 'mede2_plugin.llamafactory_ext') if m in sys.modules)}))"
    )
    assert out == {"finder": True, "heavy": []}


def test_hook_can_be_switched_off():
    out = _run(
        "import json, sys\n"
        "from llamafactory.data.template import TEMPLATES\n"
        "print(json.dumps({'registered': 'mede2_qwen2_vl' in TEMPLATES}))",
        MEDE2_NO_AUTOLOAD="1",
    )
    assert out == {"registered": False}


def test_register_all_is_idempotent():
    from llamafactory.data.converter import DATASET_CONVERTERS
    from llamafactory.data.template import TEMPLATES

    from mede2_plugin.llamafactory_ext import register_all

    before = TEMPLATES["mede2_qwen2_vl"]
    register_all()
    register_all()
    assert TEMPLATES["mede2_qwen2_vl"] is before
    assert DATASET_CONVERTERS["mede2_sft"].__name__ == "MedE2SFTConverter"


@pytest.mark.parametrize("name", ["mede2_qwen2_vl", "mede2_intern_vl", "mede2_gemma3"])
def test_templates_keep_base_format_and_change_only_the_system(name):
    import dataclasses

    from llamafactory.data.template import TEMPLATES

    from mede2_plugin.core.chat_format import system_prompt
    from mede2_plugin.llamafactory_ext.templates import base_name

    ours, base = TEMPLATES[name], TEMPLATES[base_name(name)]
    assert type(ours) is type(base) and ours.mm_plugin is base.mm_plugin
    assert ours == dataclasses.replace(base, default_system=system_prompt())
    assert ours.default_system != base.default_system


def test_a_template_registered_later_gets_its_mede2_twin_by_hand():
    from llamafactory.data.formatter import StringFormatter
    from llamafactory.data.template import TEMPLATES, register_template

    from mede2_plugin.llamafactory_ext.templates import derive_template

    if "my_custom" not in TEMPLATES:
        register_template("my_custom", format_user=StringFormatter(slots=["<u>{{content}}</u><a>"]))
    assert "mede2_my_custom" not in TEMPLATES
    assert derive_template("my_custom") == "mede2_my_custom"
    assert TEMPLATES["mede2_my_custom"].format_user is TEMPLATES["my_custom"].format_user
    with pytest.raises(KeyError, match="no template 'nope'"):
        derive_template("nope")
