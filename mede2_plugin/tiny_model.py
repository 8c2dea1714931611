"""Tiny random-weight vision-language models, built offline in seconds, for tests and the demo.

``build_tiny_qwen2_vl(out)`` writes a Qwen2-VL checkpoint (about 0.5M parameters) with a byte-level
BPE tokenizer trained here by ``tokenizers`` (every special token the chat template and processor
need), a ``Qwen2VLProcessor``, and our think/answer chat template as the tokenizer's jinja
template. LLaMA-Factory, transformers and vLLM (CPU) load it from the path. The sizes are the
smallest that vLLM's CPU attention accepts (head_dim 64) with the vision output width equal to
the text width, as vLLM requires.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

QWEN2_VL_SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>",
    "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>",
]


def _corpus() -> list[str]:
    """Text the BPE is trained on: our prompts plus common medical and answer-format words."""
    from mede2_plugin.core.chat_format import (
        assistant_response,
        system_prompt,
        user_prompt,
    )

    words = (
        "patient presents with fever cough pain chest abdominal headache diagnosis treatment "
        "the most likely next step in management is which of the following year old man woman "
        "history examination shows radiograph CT MRI ultrasound figure image lesion mass fracture "
        "answer option reasoning think therefore because however wait let me check verify"
    )
    sample = user_prompt(question="A 45-year-old man has chest pain. What is the diagnosis?",
                         options={"A": "Angina", "B": "Pneumonia", "C": "Reflux", "D": "Fracture"})
    return [system_prompt(), sample, assistant_response("Let me think step by step.", "\\boxed{A}"),
            words, "ABCDEFGHIJ abcdefghijklmnopqrstuvwxyz 0123456789 .,;:!?()[]{}<>/\\-_+=*'\"\n"] * 4


def build_tokenizer(vocab_size: int = 1024):
    """A Qwen2 tokenizer (byte-level BPE) trained offline on a small corpus."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_corpus(), trainer=trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    tokenizer = Qwen2Tokenizer(vocab=model["vocab"], merges=merges, unk_token=None,
                               eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.add_special_tokens({"additional_special_tokens": QWEN2_VL_SPECIAL_TOKENS})
    tokenizer.model_max_length = 4096
    return tokenizer


def build_tiny_qwen2_vl(out_dir: str | Path, seed: int = 0, max_pixels: int = 56 * 56 * 4) -> Path:
    """Write a tiny random Qwen2-VL (model, tokenizer, processor, chat template) to ``out_dir``."""
    import torch
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    from mede2_plugin.core.chat_template import chat_template

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in QWEN2_VL_SPECIAL_TOKENS}
    hidden = 128
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": len(tokenizer), "hidden_size": hidden, "intermediate_size": 256,
            "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
            "max_position_embeddings": 4096, "rope_parameters": {
                "rope_type": "default", "rope_theta": 10000.0, "mrope_section": [8, 12, 12]},
            "bos_token_id": None, "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"],
            "tie_word_embeddings": False,
        },
        vision_config={"depth": 1, "embed_dim": 64, "hidden_size": hidden, "num_heads": 2, "mlp_ratio": 2,
                       "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(out)

    template = chat_template("mede2_qwen2_vl")
    tokenizer.chat_template = template
    image_processor = Qwen2VLImageProcessor(min_pixels=28 * 28, max_pixels=max_pixels)
    video_processor = Qwen2VLVideoProcessor(min_pixels=28 * 28, max_pixels=max_pixels)
    processor = Qwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                 video_processor=video_processor, chat_template=template)
    processor.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def drop_loader_keys(config_path: Path) -> None:
    """Remove loading-time keys (``is_local``, ...) that ``from_pretrained`` leaves in a tokenizer config."""
    from mede2_plugin.core.files import atomic_write_json, read_json

    config, style = read_json(config_path)
    for key in ("is_local", "local_files_only"):
        config.pop(key, None)
    atomic_write_json(config_path, config, style)


BUILDERS: dict[str, Callable[..., Path]] = {"qwen2_vl": build_tiny_qwen2_vl}
#: modules that define more families (each registers its builder on import; none imports torch at import)
FAMILY_MODULES = ("mede2_plugin.tiny_internvl", "mede2_plugin.tiny_gemma3")


def register_builder(family: str, builder: Callable[..., Path]) -> None:
    """Add a tiny-model family (``mede2 tiny-model --family NAME``)."""
    if family in BUILDERS:
        raise ValueError(f"tiny-model family {family!r} already exists")
    BUILDERS[family] = builder


def tiny_model_command(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    import importlib

    for module in FAMILY_MODULES:
        importlib.import_module(module)
    parser.add_argument("out", help="folder to write the model, tokenizer and processor to")
    parser.add_argument("--family", default="qwen2_vl", choices=sorted(BUILDERS),
                        help="model family, with its MedE2 chat template: qwen2_vl (mede2_qwen2_vl), internvl "
                             "(InternVL3-hf, mede2_intern_vl), gemma3 (mede2_gemma3); default: qwen2_vl")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")

    def run(args: argparse.Namespace) -> int:
        path = BUILDERS[args.family](args.out, seed=args.seed)
        print(f"tiny {args.family} model written to {path}")
        return 0

    return run


def main() -> None:  # pragma: no cover - convenience for `python -m mede2_plugin.tiny_model`
    parser = argparse.ArgumentParser(prog="python -m mede2_plugin.tiny_model")
    raise SystemExit(tiny_model_command(parser)(parser.parse_args()))


if __name__ == "__main__":
    main()
