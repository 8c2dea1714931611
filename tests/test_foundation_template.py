"""Training-time prompts (LLaMA-Factory template) equal inference-time prompts (tokenizer jinja)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from mede2_plugin.core.chat_format import (
    assistant_response,
    boxed,
    llamafactory_prompt,
    openai_messages,
    system_prompt,
)
from mede2_plugin.core.questions import Question


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_model_dir)


def _question(tmp_path: Path, n_images: int) -> tuple[Question, list[Image.Image]]:
    images, paths = [], []
    for i in range(n_images):
        image = Image.new("RGB", (64 + 16 * i, 48), (200, 30 * i, 10))
        path = tmp_path / f"img{i}.png"
        image.save(path)
        images.append(image)
        paths.append(str(path))
    question = Question(id="q", source="test", question="Which finding is shown?",
                        options={"A": "Effusion", "B": "Pneumothorax", "C": "Normal"}, answer="B",
                        images=paths, patient_info="A 60-year-old smoker has dyspnoea.")
    return question, images


def _training_ids(processor, question, images, system=None, response=None):
    from llamafactory.data.template import TEMPLATES

    template = TEMPLATES["mede2_qwen2_vl"]
    messages = llamafactory_prompt(question) + [{"role": "assistant", "content": response or ""}]
    messages = template.mm_plugin.process_messages(messages, images, [], [], processor)
    prompt_ids, answer_ids = template.encode_oneturn(processor.tokenizer, messages, system=system)
    return prompt_ids, answer_ids


def _serving_ids(processor, question, images, drop_system=False):
    messages = openai_messages(question)
    if drop_system:
        messages = messages[1:]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    batch = processor(text=[text], images=images or None, return_tensors="pt")
    return batch["input_ids"][0].tolist(), text


@pytest.mark.parametrize("n_images", [0, 1, 2])
@pytest.mark.parametrize("drop_system", [False, True])
def test_training_and_serving_prompts_are_token_identical(processor, tmp_path, n_images, drop_system):
    question, images = _question(tmp_path, n_images)
    train_ids, _ = _training_ids(processor, question, images)
    serve_ids, text = _serving_ids(processor, question, images, drop_system=drop_system)
    assert train_ids == serve_ids, (processor.tokenizer.decode(train_ids), text)
    assert text.count("<|vision_start|>") == n_images
    assert system_prompt() in text and "Put your final answer within \\boxed{}." in text


def test_assistant_turn_is_think_then_answer_and_ends_with_im_end(processor, tmp_path):
    question, images = _question(tmp_path, 1)
    response = assistant_response("The lung edge is visible; let me verify.", boxed("B"))
    _, answer_ids = _training_ids(processor, question, images, response=response)
    decoded = processor.tokenizer.decode(answer_ids)
    assert decoded.startswith("<think>\nThe lung edge") and "</think><answer>\n\\boxed{B}\n</answer>" in decoded
    assert decoded.endswith("<|im_end|>\n")
    # the served template renders a full conversation identically too
    full = processor.apply_chat_template(
        openai_messages(question) + [{"role": "assistant", "content": response}], tokenize=False)
    assert full.endswith(response + "<|im_end|>\n")


@pytest.mark.parametrize("system", ["", "  \n"], ids=["empty", "whitespace-only"])
def test_empty_or_whitespace_only_system_message_is_treated_as_llamafactory_does(processor, tmp_path, system):
    """LLaMA-Factory encodes ``system or default_system`` (Template._encode; the local backend and
    its API server pass the system text through): an empty system message means the default
    prompt, a whitespace-only one is a truthy string and is kept as written."""
    question, images = _question(tmp_path, 1)
    train_ids, _ = _training_ids(processor, question, images, system=system)
    messages = [{"role": "system", "content": system}] + openai_messages(question)[1:]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert list(processor(text=[text], images=images)["input_ids"][0]) == train_ids
    if system:
        assert text.startswith(f"<|im_start|>system\n{system}<|im_end|>\n") and system_prompt() not in text
    else:
        assert text.startswith(f"<|im_start|>system\n{system_prompt()}<|im_end|>\n")


def test_explicit_system_prompt_overrides_default_in_both(processor, tmp_path):
    question, images = _question(tmp_path, 0)
    train_ids, _ = _training_ids(processor, question, images, system="Be brief.")
    messages = [{"role": "system", "content": "Be brief."}] + openai_messages(question)[1:]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert processor.tokenizer(text)["input_ids"] == train_ids
    assert system_prompt() not in text
