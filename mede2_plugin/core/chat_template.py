"""The MedE2 templates as tokenizer jinja chat templates, rendered without LLaMA-Factory.

One jinja file, ``templates/chat/mede2.jinja``, renders every ``mede2_<base>`` template from its
*spec*: the slots of LLaMA-Factory's template ``<base>`` and the placeholders the family's
processor expands (derived by :func:`mede2_plugin.llamafactory_ext.chat_template.template_spec`).
The specs of the templates the recipes use are shipped as
``templates/chat/<name>.json`` (equal to the derived ones by test), so the vLLM environment (no
LLaMA-Factory there), the engines and the tiny Qwen2-VL / InternVL builders render them from here; the system
prompt is filled in from ``templates/prompts/system.j2``, its one source.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mede2_plugin.core.chat_format import system_prompt
from mede2_plugin.core.files import atomic_write_json, atomic_write_text, read_json
from mede2_plugin.core.prompts import template_source
from mede2_plugin.core.resources import templates_dir

SKELETON = "chat/mede2.jinja"
_SPEC_MARKER = "__MEDE2_TEMPLATE__"


def shipped_spec_path(name: str) -> Path:
    return templates_dir() / "chat" / f"{name}.json"


def render_chat_template(spec: dict[str, Any]) -> str:
    """The jinja chat template of a spec, with the paper's system prompt as its default system."""
    spec = {**spec, "default_system": system_prompt()}
    return template_source(SKELETON).replace(_SPEC_MARKER, json.dumps(spec, ensure_ascii=False))


def chat_template(name: str) -> str:
    """The jinja chat template of a MedE2 template whose spec is shipped (``mede2_qwen2_vl``, ...)."""
    shipped = shipped_spec_path(name)
    if not shipped.is_file():
        known = ", ".join(sorted(p.stem for p in shipped.parent.glob("*.json")))
        base = name.removeprefix("mede2_") or "BASE"
        raise KeyError(f"{name}: only {known} are known without LLaMA-Factory; write this one with "
                       f"`mede2 template --base {base} --out FILE` where LLaMA-Factory is installed and pass the "
                       "file as the chat template")
    spec, _ = read_json(shipped)
    return render_chat_template(spec)


def write_chat_template(model_dir: str | Path, name: str, template: str | None = None) -> list[Path]:
    """Set the chat template of the tokenizer and processor saved in ``model_dir``.

    Writes ``template`` (default: :func:`chat_template` of ``name``) to ``chat_template.jinja``
    (read by transformers >= 4.50 and vLLM) and updates the ``chat_template`` entry of
    ``tokenizer_config.json`` and ``chat_template.json`` when the folder carries them. Every file is
    read before any is written, and each is replaced atomically.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"{model_dir}: no such model folder")
    template = chat_template(name) if template is None else template
    updates: dict[Path, tuple[dict[str, Any], Any]] = {}
    config_path = model_dir / "tokenizer_config.json"
    if config_path.exists():
        config, style = read_json(config_path)
        if isinstance(config, dict) and "chat_template" in config:
            updates[config_path] = ({**config, "chat_template": template}, style)
    legacy = model_dir / "chat_template.json"
    if legacy.exists():
        updates[legacy] = ({"chat_template": template}, read_json(legacy)[1])
    written = [atomic_write_text(model_dir / "chat_template.jinja", template)]
    written += [atomic_write_json(path, data, style) for path, (data, style) in updates.items()]
    return written
