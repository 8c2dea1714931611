"""The MedE2 templates as tokenizer jinja chat templates, for vLLM and any OpenAI-compatible server.

The files under ``templates/chat/`` render exactly what LLaMA-Factory's ``mede2_*`` templates
encode in training; the system prompt is filled in from ``templates/prompts/system.j2`` so it has
one source. ``mede2 chat-template MODEL_DIR`` writes the template into a checkpoint (e.g. M1 or M2
after training) so a server started on that folder formats prompts as training did.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from mede2_plugin.chat_format import system_prompt
from mede2_plugin.llamafactory_ext.templates import TEMPLATES
from mede2_plugin.prompts import template_source

_SYSTEM_MARKER = "__MEDE2_SYSTEM_PROMPT__"


def chat_template(name: str) -> str:
    """The jinja chat template of MedE2 template ``name`` (e.g. ``mede2_qwen2_vl``)."""
    if name not in TEMPLATES:
        raise KeyError(f"unknown MedE2 template {name!r}; known: {sorted(TEMPLATES)}")
    source = template_source(TEMPLATES[name][1])
    return source.replace(_SYSTEM_MARKER, json.dumps(system_prompt()))


def write_chat_template(model_dir: str | Path, name: str) -> list[Path]:
    """Set the chat template of the tokenizer and processor saved in ``model_dir``.

    Writes ``chat_template.jinja`` (read by transformers >= 4.50 and vLLM) and updates the
    ``chat_template`` entry of ``tokenizer_config.json`` when that file carries one.
    """
    model_dir = Path(model_dir)
    template = chat_template(name)
    written = [model_dir / "chat_template.jinja"]
    written[0].write_text(template, encoding="utf-8")
    config_path = model_dir / "tokenizer_config.json"
    if config_path.exists():
        config = json.loads(config_path.read_text(encoding="utf-8"))
        if "chat_template" in config:
            config["chat_template"] = template
            config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
            written.append(config_path)
    legacy = model_dir / "chat_template.json"
    if legacy.exists():
        legacy.write_text(json.dumps({"chat_template": template}, indent=2), encoding="utf-8")
        written.append(legacy)
    return written


def chat_template_command(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    parser.add_argument("model_dir", nargs="?", help="model or tokenizer folder to write the template into")
    parser.add_argument("--template", default="mede2_qwen2_vl", choices=sorted(TEMPLATES),
                        help="which MedE2 template (default: mede2_qwen2_vl)")
    parser.add_argument("--print", action="store_true", dest="print_only",
                        help="print the jinja template instead of writing it")

    def run(args: argparse.Namespace) -> int:
        if args.print_only or not args.model_dir:
            print(chat_template(args.template))
            return 0
        for path in write_chat_template(args.model_dir, args.template):
            print(f"wrote {path}")
        return 0

    return run
