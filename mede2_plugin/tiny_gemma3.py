"""A tiny random-weight Gemma 3 vision-language model, built offline in seconds (``--family gemma3``).

``Gemma3ForConditionalGeneration`` with a Gemma 3 text model (hidden 128, 2 heads of 64, 1 KV
head) and a one-layer SigLIP vision encoder on 56x56 images with 14-pixel patches, pooled to
4 soft tokens per image, so every image becomes ``\\n\\n<start_of_image>`` + 4 ``<image_soft_token>``
+ ``<end_of_image>\\n\\n`` (``Gemma3Processor``'s full image sequence, which LLaMA-Factory's
``gemma3`` plugin uses too). The tokenizer is the byte-level BPE of
:func:`mede2_plugin.tiny_model.build_tokenizer` with Gemma's turn and image tokens (named through
``extra_special_tokens`` as ``Gemma3Processor`` expects) and ``<bos>``, which the ``gemma3``
template puts first. The chat template is ours (``mede2_gemma3``, derived from LLaMA-Factory's
``gemma3``, where the system text joins the first user turn). About 0.6M parameters.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from mede2_plugin.tiny_model import build_tokenizer, drop_loader_keys, register_builder

GEMMA3_TOKENS = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}
TURN_TOKENS = ["<bos>", "<start_of_turn>", "<end_of_turn>"]
IMAGE_SIZE = 56
PATCH_SIZE = 14
TOKENS_PER_IMAGE = 4


def build_gemma3_tokenizer():
    """The tiny BPE tokenizer with Gemma 3's bos, turn and named image tokens, and runs of one to
    four newlines as single tokens, as in Gemma's vocabulary (vLLM's Gemma 3 processor looks them up
    to merge the newlines around an expanded image as the tokenizer would)."""
    from tokenizers import AddedToken
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = build_tokenizer()
        tokenizer.add_tokens(TURN_TOKENS, special_tokens=True)
        tokenizer.add_tokens([AddedToken("\n" * n, normalized=False) for n in range(1, 5)])
        tokenizer.save_pretrained(tmp)
        return AutoTokenizer.from_pretrained(tmp, bos_token="<bos>", eos_token="<end_of_turn>",
                                             extra_special_tokens=dict(GEMMA3_TOKENS))


def build_tiny_gemma3(out_dir: str | Path, seed: int = 0) -> Path:
    """Write a tiny random Gemma 3 (model, tokenizer, processor, chat template) to ``out_dir``."""
    import torch
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3ImageProcessor,
        Gemma3Processor,
    )

    from mede2_plugin.llamafactory_ext.chat_template import chat_template

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_gemma3_tokenizer()
    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in GEMMA3_TOKENS.items()}
    eos_id = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    pad_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = Gemma3Config(
        text_config={
            "vocab_size": len(tokenizer), "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
            "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 64, "max_position_embeddings": 4096,
            "sliding_window": 512, "bos_token_id": tokenizer.bos_token_id, "eos_token_id": eos_id,
            "pad_token_id": pad_id,
        },
        vision_config={"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": IMAGE_SIZE, "patch_size": PATCH_SIZE, "vision_use_head": False},
        mm_tokens_per_image=TOKENS_PER_IMAGE, boi_token_index=ids["boi_token"], eoi_token_index=ids["eoi_token"],
        image_token_index=ids["image_token"],
    )
    torch.manual_seed(seed)
    model = Gemma3ForConditionalGeneration(config)
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = eos_id
    model.generation_config.pad_token_id = pad_id
    model.save_pretrained(out)
    _hub_weight_names(out / "model.safetensors")

    template = chat_template("mede2_gemma3")
    tokenizer.chat_template = template
    image_processor = Gemma3ImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, do_pan_and_scan=False)
    processor = Gemma3Processor(image_processor=image_processor, tokenizer=tokenizer,
                                image_seq_length=TOKENS_PER_IMAGE, chat_template=template)
    processor.save_pretrained(out)
    tokenizer.save_pretrained(out)
    drop_loader_keys(out / "tokenizer_config.json")
    return out


def _hub_weight_names(weights: Path) -> None:
    """Name the vision weights as Gemma 3 checkpoints on the hub do (``vision_tower.vision_model.*``):
    transformers 5 saves ``vision_tower.*``, which it reads back but vLLM does not."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(weights)
    renamed = {("vision_tower.vision_model." + key[len("vision_tower."):] if key.startswith("vision_tower.") else key):
               tensor for key, tensor in tensors.items()}
    save_file(renamed, weights, metadata={"format": "pt"})


register_builder("gemma3", build_tiny_gemma3)
