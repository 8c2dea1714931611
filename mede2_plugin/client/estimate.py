"""What calls not made yet will cost: tokens and dollars of rendered requests (``mede2 run --plan``).

Nothing here sends anything or builds a backend. :func:`estimate_calls` takes the requests a
step would send (:class:`~mede2_plugin.core.stage.PlannedCalls`), leaves out those already paid
(an answered row in the results file, or the answer in the response cache), and estimates the
rest:

* **Input tokens, text**: no tokenizer ships with the package, so text is counted from its
  characters: ``ceil(chars / CHARS_PER_TOKEN)``, plus :data:`MESSAGE_TOKENS` per message (role and
  separators) and :data:`REPLY_TOKENS` for the reply's start. Both providers document about 4
  characters per token for English (https://ai.google.dev/gemini-api/docs/tokens,
  https://help.openai.com/en/articles/4936856); ``tests/benchmarks/bench_token_estimate.py``
  measured 3.9 characters per ``o200k_base`` token (GPT-4o's tokenizer) on real MedQA,
  MedXpertQA, MMMU-Pro and Medbullets rows and the package's prompts, so 3.8 leans slightly high.
* **Input tokens, images**, as each provider bills them (:func:`image_tokens`).
* **Output tokens**: ``max_tokens`` (an upper bound) times the samples asked, or, once the role
  has answers in its results file, their measured mean per sample times the samples asked.
  The role's own results are used rather than the response cache, which mixes the roles that
  share a model.
* **Dollars**: the interactive and the batch price of :mod:`mede2_plugin.client.cost`.

In-process engines (``local``, ``vllm``) run on your machines: their calls are counted, not priced.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mede2_plugin.client.cache import CACHE_FILE, cache_key
from mede2_plugin.client.config import BackendConfig, ChatRequest
from mede2_plugin.client.cost import call_cost, price_for
from mede2_plugin.core.jsonl import latest_records
from mede2_plugin.core.media import image_url, load_image, local_path

CHARS_PER_TOKEN = 3.8
MESSAGE_TOKENS = 4
REPLY_TOKENS = 3
IN_PROCESS = ("local", "vllm")
#: OpenAI "high"/"auto" detail: (base tokens, tokens per 512-px tile) by model prefix, longest first
#: (https://platform.openai.com/docs/guides/images-vision#calculating-costs)
OPENAI_IMAGE_TOKENS = {"gpt-4o-mini": (2833, 5667), "": (85, 170)}
GEMINI_IMAGE_TOKENS = 258  # per image up to 384x384, else per 768x768 tile (Gemini 2.x)
UNKNOWN_IMAGE_SIZE = (1024, 1024)  # an http(s) image is not fetched by a plan


def text_tokens(text: str) -> int:
    """Estimated tokens of ``text`` (see the module docstring)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def image_size(url: str) -> tuple[int, int]:
    """Width and height of a local image or data URL (read from its header); an http(s) image
    counts as :data:`UNKNOWN_IMAGE_SIZE`."""
    from PIL import Image

    if url.startswith(("http://", "https://")):
        return UNKNOWN_IMAGE_SIZE
    path = local_path(url)
    if path is not None:
        with Image.open(path) as image:
            return image.size
    import io

    data, _ = load_image(url)
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def image_tokens(backend: str, model: str, size: tuple[int, int], detail: str = "auto") -> int:
    """Input tokens one image costs on ``backend``/``model``.

    * ``openai``: GPT-4o-class billing: ``detail: low`` is the base cost; otherwise the image is
      scaled to fit 2048x2048, then its shortest side down to 768 px, and each 512-px tile costs
      the tile tokens on top of the base (85 + 170 per tile for GPT-4o; GPT-4o-mini bills
      2833 + 5667 per tile). https://platform.openai.com/docs/guides/images-vision#calculating-costs
    * ``gemini``: 258 tokens for an image up to 384 px on both sides, else 258 per 768x768 tile
      it is cut into (Gemini 2.x). https://ai.google.dev/gemini-api/docs/tokens
    * in-process engines: 0 (not billed).
    """
    width, height = size
    if backend == "gemini":
        if width <= 384 and height <= 384:
            return GEMINI_IMAGE_TOKENS
        return math.ceil(width / 768) * math.ceil(height / 768) * GEMINI_IMAGE_TOKENS
    if backend != "openai":
        return 0
    name = model.rsplit("/", 1)[-1]
    base, tile = OPENAI_IMAGE_TOKENS[max((p for p in OPENAI_IMAGE_TOKENS if name.startswith(p)), key=len)]
    if detail == "low":
        return base
    scale = min(1.0, 2048 / max(width, height))
    width, height = width * scale, height * scale
    scale = min(1.0, 768 / min(width, height))
    width, height = width * scale, height * scale
    return base + tile * math.ceil(width / 512) * math.ceil(height / 512)


def input_tokens(request: ChatRequest, backend: BackendConfig) -> int:
    """Estimated input tokens of ``request`` sent to ``backend`` (text and images)."""
    total = REPLY_TOKENS
    for message in request.messages:
        total += MESSAGE_TOKENS
        content = message.get("content")
        for part in [{"type": "text", "text": content}] if isinstance(content, str) else content or []:
            url = image_url(part)
            if url is None:
                total += text_tokens(part.get("text") or "")
            elif backend.backend not in IN_PROCESS:
                detail = (part.get("image_url") or {}).get("detail", "auto") if isinstance(part.get("image_url"), dict) else "auto"
                total += image_tokens(backend.backend, backend.model, image_size(url), detail)
    return total


def output_bound(request: ChatRequest) -> int | None:
    """Most output tokens of one sample: ``max_tokens`` (or ``max_completion_tokens`` sent as an
    extra field, as OpenAI reasoning models take it); None when the request sets no limit."""
    limit = request.max_tokens or request.extra.get("max_completion_tokens") or request.extra.get("max_output_tokens")
    return int(limit) if limit else None


def measured_output(path: Path | None) -> tuple[float, int] | None:
    """Mean output tokens per sample over the answered rows of a results file, and how many
    samples that mean is over (None: no answer yet)."""
    if path is None:
        return None
    tokens = samples = 0
    for row in latest_records(path).values():
        if row.get("error") is None and row.get("samples"):
            tokens += int((row.get("usage") or {}).get("completion_tokens") or 0)
            samples += len(row["samples"])
    return (tokens / samples, samples) if samples else None


def expected_output(path: Path | None, request: ChatRequest) -> tuple[int, str]:
    """Tokens of one answer to ``request`` (a text a later request will read) and how that was
    found: the measured mean of the answers in ``path``, else its ``max_tokens``."""
    measured = measured_output(path)
    if measured:
        return round(measured[0]), f"the mean answer so far ({measured[0]:.0f} tokens over {measured[1]})"
    bound = output_bound(request) or 0
    return bound, f"the max_tokens of the answer it reads ({bound}: an upper bound)"


def cached_keys(cache_dir: Path | None, keys: Iterable[str]) -> set[str]:
    """Which of ``keys`` the response cache in ``cache_dir`` answers (opened read-only; a missing
    cache answers none)."""
    path = Path(cache_dir) / CACHE_FILE if cache_dir else None
    wanted = list(keys)
    if path is None or not path.is_file() or not wanted:
        return set()
    found: set[str] = set()
    with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True) as db:
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(k for (k,) in db.execute(f"SELECT key FROM responses WHERE key IN ({marks})", chunk))
    return found


@dataclass
class RoleEstimate:
    """The figures of one role of one step (``low``/``high``: the range; equal when exact).

    Attributes:
        stage, role, backend, model, mode: who is called, and how (``interactive`` or ``batch``).
        requests: ``[low, high]`` requests still to pay for.
        samples: ``[low, high]`` samples (answers) those requests ask for.
        done: requests already answered in the results file (nothing to pay).
        cached: requests the response cache answers (nothing to pay).
        input_tokens, output_tokens: ``[low, high]`` estimated tokens of the requests to pay.
        usd_interactive, usd_batch: ``[low, high]`` dollars at each price; None when unknown.
        priced: False for roles on your own machines (in-process engines): nothing is billed.
        count_basis, input_basis, output_basis: how each figure was obtained.
        notes: other bounds and caveats.
    """

    stage: str
    role: str
    backend: str
    model: str
    mode: str
    requests: list[int] = field(default_factory=lambda: [0, 0])
    samples: list[int] = field(default_factory=lambda: [0, 0])
    done: int = 0
    cached: int = 0
    input_tokens: list[int] = field(default_factory=lambda: [0, 0])
    output_tokens: list[int] = field(default_factory=lambda: [0, 0])
    usd_interactive: list[float] | None = None
    usd_batch: list[float] | None = None
    priced: bool = True
    count_basis: str = ""
    input_basis: str = ""
    output_basis: str = ""
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def estimate_calls(stage: str, planned: Any, cache_dir: Path | None, reuse_output: bool = True) -> RoleEstimate:
    """The figures of one :class:`~mede2_plugin.core.stage.PlannedCalls`.

    Args:
        stage: the step's name.
        planned: the role's planned calls.
        cache_dir: the response cache the calls would use (None: none).
        reuse_output: count ids answered in the results file as done (False when the run will
            move that file aside and start the step afresh).
    """
    backend: BackendConfig = planned.backend
    priced = backend.backend not in IN_PROCESS
    answered = {key for key, row in latest_records(planned.output).items() if row.get("error") is None} \
        if reuse_output and planned.output is not None else set()
    estimate = RoleEstimate(stage, planned.role, backend.backend, backend.model, backend.mode, priced=priced,
                            count_basis=planned.basis, notes=list(planned.notes))
    keys = {}
    if priced and cache_dir is not None and (Path(cache_dir) / CACHE_FILE).is_file():
        keys = {r.id: cache_key(backend, r) for r in planned.certain + planned.possible if r.id not in answered}
    hits = cached_keys(cache_dir, keys.values())
    measured = measured_output(planned.output)
    bounds: set[str] = set()
    for index, group in enumerate((planned.certain, planned.possible)):
        for request in group:
            if request.id in answered or keys.get(request.id) in hits:
                estimate.done += request.id in answered
                estimate.cached += request.id not in answered
                continue
            per_sample = measured[0] if measured else output_bound(request)
            if per_sample is None:
                bounds.add("no max_tokens")
            for slot in range(index, 2):
                estimate.requests[slot] += 1
                estimate.samples[slot] += request.n
                estimate.input_tokens[slot] += input_tokens(request, backend) + planned.extra_tokens.get(request.id, 0)
                estimate.output_tokens[slot] += round((per_sample or 0) * request.n)
    estimate.input_basis = f"rendered prompts (text chars / {CHARS_PER_TOKEN}, images as the provider bills them)"
    if planned.extra_tokens:
        estimate.input_basis += f"; + {planned.extra_basis} for {len(planned.extra_tokens)} requests not renderable yet"
    estimate.output_basis = (f"measured: mean {measured[0]:.0f} tokens per sample over {measured[1]} answers"
                             if measured else "max_tokens per sample (an upper bound)")
    if bounds:
        estimate.notes.append("some requests set no max_tokens: their output is not counted")
    if priced:
        for mode in ("interactive", "batch"):
            price = price_for(backend.model, backend.prices, mode=mode)
            costs = [call_cost(i, o, price) for i, o in zip(estimate.input_tokens, estimate.output_tokens)]
            setattr(estimate, f"usd_{mode}", None if price is None else [round(c or 0.0, 6) for c in costs])
    return estimate
