"""The paper's think/answer chat templates: a ``mede2_<base>`` for every LLaMA-Factory template.

``mede2_<base>`` is LLaMA-Factory's registered template ``<base>`` copied with
``dataclasses.replace`` and the paper's Appendix-A system prompt as default system: the same
class, formatters, stop words and multimodal plugin, so it encodes exactly what ``<base>`` does
but for the system text. The reasoning stays inside the assistant text
(``<think>..</think><answer>..</answer>``), so the same string is trained on and produced.

:func:`register` derives one for every template in LLaMA-Factory's registry when its template
module loads; the import hook calls it in every process that imports LLaMA-Factory, torchrun
workers included, so ``template: mede2_gemma3`` works in any recipe without a file to keep in
sync. A template that other code registers later gets its MedE2 twin from
:func:`derive_template`. ``mede2 template --base NAME`` writes the matching tokenizer chat
template (:mod:`mede2_plugin.llamafactory_ext.chat_template`).
"""

from __future__ import annotations

import dataclasses

PREFIX = "mede2_"


def mede2_name(base: str) -> str:
    """The MedE2 template derived from LLaMA-Factory template ``base``."""
    return PREFIX + base


def base_name(name: str) -> str:
    """The LLaMA-Factory template a MedE2 template name derives from (``mede2_qwen2_vl`` -> ``qwen2_vl``)."""
    if not name.startswith(PREFIX) or len(name) == len(PREFIX):
        raise KeyError(f"{name!r} is not a MedE2 template name (mede2_<LLaMA-Factory template>)")
    return name[len(PREFIX):]


def derive_template(base: str, system: str | None = None) -> str:
    """Register ``mede2_<base>`` in LLaMA-Factory's registry (once) and return its name."""
    from llamafactory.data.template import TEMPLATES

    if base not in TEMPLATES:
        raise KeyError(f"LLaMA-Factory has no template {base!r}; `llamafactory.data.template.TEMPLATES` lists them")
    name = mede2_name(base)
    # LLaMA-Factory internal: the registry llamafactory.data.template.TEMPLATES and its Template
    # dataclass's `default_system` field (see INTERNALS in llamafactory_ext/__init__.py)
    if name not in TEMPLATES:
        if system is None:
            from mede2_plugin.core.chat_format import system_prompt

            system = system_prompt()
        TEMPLATES[name] = dataclasses.replace(TEMPLATES[base], default_system=system)
    return name


def register() -> None:
    """Derive ``mede2_<base>`` for every template LLaMA-Factory has registered (idempotent)."""
    from llamafactory.data.template import TEMPLATES

    from mede2_plugin.core.chat_format import system_prompt

    system = system_prompt()
    for base in [name for name in TEMPLATES if not name.startswith(PREFIX)]:
        derive_template(base, system)
