"""A tiny random-weight InternVL3 (``-hf`` layout), built offline in seconds (``--family internvl``).

The checkpoint is what LLaMA-Factory supports for InternVL3 (the ``-hf`` conversion, template
``intern_vl``) and what vLLM serves: ``InternVLForConditionalGeneration`` with a Qwen2 text model
(hidden 128, 2 heads, 1 KV head: vLLM's CPU attention needs head_dim 64), a one-layer vision
encoder on 56x56 images with 14-pixel patches, and ``downsample_ratio`` 0.5, so every image is
4 ``<IMG_CONTEXT>`` tokens between ``<img>`` and ``</img>``. The tokenizer is the byte-level BPE of
:func:`mede2_plugin.tiny_model.build_tokenizer` plus InternVL's image tokens (named through
``extra_special_tokens`` as ``InternVLProcessor`` expects); the chat template is ours
(``mede2_intern_vl``). About 0.6M parameters.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from mede2_plugin.tiny_model import build_tokenizer, drop_loader_keys, register_builder

INTERNVL_TOKENS = {
    "start_image_token": "<img>",
    "end_image_token": "</img>",
    "context_image_token": "<IMG_CONTEXT>",
    "video_token": "<video>",
}
IMAGE_SIZE = 56
PATCH_SIZE = 14
DOWNSAMPLE_RATIO = 0.5
IMAGE_SEQ_LENGTH = int((IMAGE_SIZE // PATCH_SIZE) ** 2 * DOWNSAMPLE_RATIO**2)  # 4 tokens per image


def build_internvl_tokenizer():
    """The tiny BPE tokenizer with InternVL's named image tokens."""
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        build_tokenizer().save_pretrained(tmp)
        return AutoTokenizer.from_pretrained(tmp, extra_special_tokens=dict(INTERNVL_TOKENS))


def build_tiny_internvl(out_dir: str | Path, seed: int = 0) -> Path:
    """Write a tiny random InternVL3-hf (model, tokenizer, processor, chat template) to ``out_dir``."""
    import torch
    from transformers import (
        GotOcr2ImageProcessor,
        InternVLConfig,
        InternVLForConditionalGeneration,
        InternVLProcessor,
        InternVLVideoProcessor,
    )

    from mede2_plugin.core.chat_template import chat_template

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_internvl_tokenizer()
    eos_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    hidden = 128
    config = InternVLConfig(
        text_config={
            "model_type": "qwen2", "vocab_size": len(tokenizer), "hidden_size": hidden,
            "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 2,
            "num_key_value_heads": 1, "max_position_embeddings": 4096,
            "bos_token_id": None, "eos_token_id": eos_id, "pad_token_id": pad_id, "tie_word_embeddings": False,
        },
        vision_config={
            "hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 128,
            "image_size": [IMAGE_SIZE, IMAGE_SIZE], "patch_size": [PATCH_SIZE, PATCH_SIZE],
        },
        image_token_id=tokenizer.context_image_token_id, image_seq_length=IMAGE_SEQ_LENGTH,
        downsample_ratio=DOWNSAMPLE_RATIO, tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = InternVLForConditionalGeneration(config)
    model.generation_config.eos_token_id = eos_id
    model.generation_config.pad_token_id = pad_id
    model.save_pretrained(out)

    template = chat_template("mede2_intern_vl")
    tokenizer.chat_template = template
    size = {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    image_processor = GotOcr2ImageProcessor(size=size, crop_to_patches=False)
    video_processor = InternVLVideoProcessor(size=size)
    processor = InternVLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                  video_processor=video_processor, image_seq_length=IMAGE_SEQ_LENGTH,
                                  chat_template=template)
    processor.save_pretrained(out)
    tokenizer.save_pretrained(out)
    drop_loader_keys(out / "tokenizer_config.json")
    return out


register_builder("internvl", build_tiny_internvl)
