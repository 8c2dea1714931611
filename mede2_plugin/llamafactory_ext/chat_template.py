"""The MedE2 templates as tokenizer jinja chat templates, for vLLM and any OpenAI-compatible server.

One jinja file, ``templates/chat/mede2.jinja``, renders every ``mede2_<base>`` template from its
*spec* (:func:`template_spec`): the slots of LLaMA-Factory's template ``<base>`` (prefix, system,
user, assistant), whether the system text joins the first user turn (``Llama2Template``), and
the image and video placeholders that the family's HuggingFace processor expands
(:data:`MEDIA_PLACEHOLDERS`). The system prompt is filled in from ``templates/prompts/system.j2``,
its one source. The specs of the templates the recipes use are shipped
(``templates/chat/<name>.json``, equal to the derived ones by test) and rendered without
LLaMA-Factory by :mod:`mede2_plugin.core.chat_template` (the vLLM environment, the engines, the
tiny Qwen2-VL and InternVL builders). :func:`check_chat_template` proves that a template
renders, character for character, what LLaMA-Factory's own encoder produces for the
conversations MedE2 trains on, explicit, empty and whitespace-only system messages included.

Adding a model family: LLaMA-Factory registers its template (``mede2_<base>`` then exists in every
process); add the placeholders its HF processor expands to :data:`MEDIA_PLACEHOLDERS`, keyed by
LLaMA-Factory's multimodal plugin name; ``mede2 template --base <base>`` writes the chat template;
a tiny checkpoint (``mede2 tiny-model --family ...``) lets the train/serve identity tests cover it.

``mede2 chat-template MODEL_DIR --template NAME`` writes a template into a checkpoint (e.g. M1 or
M2 after training) so a server started on that folder formats prompts as training did.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mede2_plugin.core.chat_template import chat_template as core_chat_template
from mede2_plugin.core.chat_template import render_chat_template, shipped_spec_path
from mede2_plugin.core.chat_template import (
    write_chat_template as core_write_chat_template,
)
from mede2_plugin.core.files import atomic_write_text
from mede2_plugin.llamafactory_ext.templates import (
    base_name,
    derive_template,
    mede2_name,
)

#: LLaMA-Factory multimodal plugin -> (image, video) placeholder its family's HF processor expands
#: (LLaMA-Factory's plugin expands ``<image>`` to the same tokens); ``{image_token}`` and
#: ``{video_token}`` are the plugin's own. An empty placeholder: that input is refused.
MEDIA_PLACEHOLDERS: dict[str, tuple[str, str]] = {
    "qwen2_vl": ("<|vision_start|>{image_token}<|vision_end|>", "<|vision_start|>{video_token}<|vision_end|>"),
    "intern_vl": ("<IMG_CONTEXT>", "<video>"),  # InternVLProcessor wraps it in <img>...</img>
    "gemma3": ("<start_of_image>", ""),  # Gemma3Processor expands the boi token to its full image sequence
}


class UnsupportedTemplate(ValueError):
    """A LLaMA-Factory template the jinja chat template cannot reproduce."""


def _items(slots: list[Any], name: str) -> list[dict[str, Any]]:
    """LLaMA-Factory formatter slots as spec items: text, the content, or the bos/eos token."""
    items: list[dict[str, Any]] = []
    for slot in slots:
        if isinstance(slot, str):
            before, found, after = slot.partition("{{content}}")
            if re.search(r"\{\{\w+\}\}", before + after):
                raise UnsupportedTemplate(f"{name}: slot {slot!r} has a placeholder other than one {{{{content}}}}")
            items += [{"text": before}] if before else []
            items += [{"content": True}] if found else []
            items += [{"text": after}] if after else []
        elif isinstance(slot, set):  # as LLaMA-Factory: a set names the bos or eos token, else it is nothing
            items += [{"token": token} for token in ("bos_token", "eos_token") if token in slot][:1]
        elif isinstance(slot, dict):
            items.append({"text": slot["token"]})  # a special token, written out
    return items


def template_spec(name: str) -> dict[str, Any]:
    """The spec of MedE2 template ``name`` read from LLaMA-Factory's registry (without the system
    prompt, which :func:`chat_template` fills in). Needs LLaMA-Factory."""
    # LLaMA-Factory internals: the Template classes, their format_* slots, mm_plugin, thought_words
    # and the multimodal plugin registry (see INTERNALS in llamafactory_ext/__init__.py)
    from llamafactory.data.mm_plugin import PLUGINS
    from llamafactory.data.template import (
        TEMPLATES,
        Llama2Template,
        ReasoningTemplate,
        Template,
    )

    template = TEMPLATES[derive_template(base_name(name))]
    kind = type(template)
    if kind not in (Template, ReasoningTemplate, Llama2Template):
        raise UnsupportedTemplate(f"{name}: LLaMA-Factory encodes it with its own class {kind.__name__}")
    fuse = kind is Llama2Template
    plugin = template.mm_plugin
    family = next((key for key, cls in PLUGINS.items() if type(plugin) is cls), "base")
    tokens = {"image_token": plugin.image_token or "", "video_token": plugin.video_token or ""}
    image, video = (p.format(**tokens) for p in MEDIA_PLACEHOLDERS.get(family, ("", "")))
    system_slots = template.format_system.slots[:1] if fuse else template.format_system.slots
    reasoning = kind is ReasoningTemplate  # an answer without its thought tags gets an empty thought first
    return {"name": name, "base": base_name(name), "prefix": _items(template.format_prefix.slots, name),
            "system": _items(system_slots, name), "fuse_system": fuse,
            "user": _items(template.format_user.slots, name),
            "assistant": _items(template.format_assistant.slots, name), "image": image, "video": video,
            "empty_thought": "".join(template.thought_words) if reasoning else "",
            "thought_tags": [word.strip() for word in template.thought_words]}


def chat_template(name: str) -> str:
    """The jinja chat template of MedE2 template ``name`` (e.g. ``mede2_gemma3``): the shipped spec
    when there is one, else the one derived from LLaMA-Factory's registry."""
    if shipped_spec_path(name).is_file():
        return core_chat_template(name)
    base_name(name)
    try:
        spec = template_spec(name)
    except ImportError:
        return core_chat_template(name)  # raises KeyError saying how to write it where LLaMA-Factory is
    return render_chat_template(spec)


class _TextTokenizer:
    """Stands in for a tokenizer so that LLaMA-Factory's encoder yields text: one id per character,
    special tokens as their strings."""

    def __init__(self, bos: str | None, eos: str) -> None:
        self.bos_token = self.bos_token_id = bos
        self.eos_token = self.eos_token_id = eos

    def encode(self, text: str, add_special_tokens: bool = False) -> list[str]:
        return list(text)

    def convert_tokens_to_ids(self, token: str) -> str:
        return token


RESPONSE = "<think>\nThe lesion is bright.\n</think><answer>\n\\boxed{A}\n</answer>"
CHECK_SYSTEMS = {"default": None, "explicit": "Be brief.", "empty": "", "whitespace-only": "  \n"}


def check_chat_template(name: str, bos: str | None = "<s>", eos: str = "</s>") -> list[str]:
    """Differences between the chat template of ``name`` and LLaMA-Factory's encoding of it, as
    text, over single-turn conversations (system default, explicit, empty, whitespace-only; the
    prompt with generation header and the full conversation) and, except for reasoning templates
    (which drop earlier thoughts), a two-turn one. Empty when they agree. Needs LLaMA-Factory."""
    from llamafactory.data.template import TEMPLATES, ReasoningTemplate
    from transformers.utils.chat_template_utils import render_jinja_template

    template = TEMPLATES[derive_template(base_name(name))]
    jinja = chat_template(name)
    tokenizer = _TextTokenizer(bos, eos)
    turn = [{"role": "user", "content": "Which lesion?"}, {"role": "assistant", "content": RESPONSE}]
    cases = [(label, system, turn) for label, system in CHECK_SYSTEMS.items()]
    if not isinstance(template, ReasoningTemplate):
        cases.append(("two turns", None, turn + [{"role": "user", "content": "Sure?"},
                                                 {"role": "assistant", "content": "Yes."}]))
    problems = []
    for label, system, turns in cases:
        prompt_ids, answer_ids = template.encode_oneturn(tokenizer, turns, system=system)
        head = [] if system is None else [{"role": "system", "content": system}]
        for what, messages, generation, expected in (("prompt", turns[:-1], True, "".join(prompt_ids)),
                                                     ("conversation", turns, False,
                                                      "".join(prompt_ids + answer_ids))):
            (text,), _ = render_jinja_template([head + messages], chat_template=jinja, bos_token=bos,
                                               eos_token=eos, add_generation_prompt=generation)
            if text != expected:
                problems.append(f"{name}, {label} system, {what}: LLaMA-Factory {expected!r} "
                                f"!= chat template {text!r}")
    return problems


def write_chat_template(model_dir: str | Path, name: str) -> list[Path]:
    """Write the chat template of ``name`` (shipped or derived) into ``model_dir`` (see
    :func:`mede2_plugin.core.chat_template.write_chat_template`)."""
    return core_write_chat_template(model_dir, name, chat_template(name))


def chat_template_command(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    parser.add_argument("model_dir", nargs="?", help="model or tokenizer folder to write the template into")
    parser.add_argument("--template", default="mede2_qwen2_vl",
                        help="MedE2 template: mede2_<LLaMA-Factory template> (default: mede2_qwen2_vl)")
    parser.add_argument("--print", action="store_true", dest="print_only",
                        help="print the jinja template instead of writing it")

    def run(args: argparse.Namespace) -> int:
        try:
            if args.print_only or not args.model_dir:
                print(chat_template(args.template))
                return 0
            for path in write_chat_template(args.model_dir, args.template):
                print(f"wrote {path}")
        except (KeyError, ValueError, OSError) as err:
            print(f"error: {err.args[0] if isinstance(err, KeyError) else err}", file=sys.stderr)
            return 2
        return 0

    return run


def template_command(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    parser.add_argument("--base", help="LLaMA-Factory template to derive mede2_<base> from (e.g. gemma3, qwen3_vl)")
    parser.add_argument("--out", help="write the tokenizer chat template (jinja) to this file (default: print it)")
    parser.add_argument("--model-dir", help="also write it into this model or tokenizer folder")
    parser.add_argument("--list", action="store_true",
                        help="list every LLaMA-Factory template and whether its chat template checks out")

    def run(args: argparse.Namespace) -> int:
        from llamafactory.data.template import TEMPLATES

        from mede2_plugin.llamafactory_ext.templates import PREFIX

        if args.list:
            for base in sorted(name for name in TEMPLATES if not name.startswith(PREFIX)):
                try:
                    problems = check_chat_template(mede2_name(base))
                except (UnsupportedTemplate, KeyError) as err:
                    problems = [str(err)]
                print(f"{mede2_name(base)}\t{'ok' if not problems else 'no chat template: ' + problems[0][:120]}")
            return 0
        if not args.base:
            parser.error("give --base NAME (or --list)")
        try:
            name = derive_template(args.base)
            problems = check_chat_template(name)
        except (UnsupportedTemplate, KeyError) as err:
            print(f"error: {err.args[0] if isinstance(err, KeyError) else err}", file=sys.stderr)
            return 2
        if problems:
            print("error: the chat template would not match training:\n  " + "\n  ".join(problems), file=sys.stderr)
            return 1
        jinja = chat_template(name)
        if args.out:
            atomic_write_text(args.out, jinja)
        elif not args.model_dir:
            print(jinja)
        if args.model_dir:
            write_chat_template(args.model_dir, name)
        print(f"{name}: LLaMA-Factory's {args.base} with the MedE2 system prompt, checked against its "
              f"encoder; use `template: {name}` in a recipe (every process registers it)", file=sys.stderr)
        return 0

    return run
