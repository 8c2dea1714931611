"""The paper's think/answer chat templates, derived from LLaMA-Factory's own VL templates.

Each MedE2 template is its base template (same formatters, stop words and multimodal plugin)
with the paper's Appendix-A system prompt as default system. The reasoning stays inside the
assistant text (``<think>..</think><answer>..</answer>``), so the same string is trained on and
produced, and the tokenizer chat template in ``templates/chat/`` renders it identically.
"""

from __future__ import annotations

import dataclasses

from mede2_plugin.chat_format import system_prompt

#: MedE2 template name -> (LLaMA-Factory base template, tokenizer jinja file under templates/chat/)
TEMPLATES: dict[str, tuple[str, str]] = {
    "mede2_qwen2_vl": ("qwen2_vl", "chat/mede2_qwen2_vl.jinja"),  # Qwen2-VL and Qwen2.5-VL
    "mede2_intern_vl": ("intern_vl", "chat/mede2_intern_vl.jinja"),  # InternVL3 -hf checkpoints
}


def register() -> None:
    from llamafactory.data import template as lf_template

    for name, (base, _) in TEMPLATES.items():
        if name in lf_template.TEMPLATES:
            continue
        lf_template.TEMPLATES[name] = dataclasses.replace(
            lf_template.TEMPLATES[base], default_system=system_prompt()
        )
