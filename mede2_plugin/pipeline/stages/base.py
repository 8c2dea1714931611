"""What every stage shares: where outputs go (:class:`Layout`), what a stage gets
(:class:`Context`) and returns (:class:`StageResult`), and small helpers for fingerprints."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mede2_plugin.client.config import BackendConfig
from mede2_plugin.curate.common import slug
from mede2_plugin.pipeline.config import (
    PipelineConfig,
    iter_role_backends,
    model_backend,
)
from mede2_plugin.pipeline.state import ContentHasher, StageInputs
from mede2_plugin.settings import to_plain

# BackendConfig fields that change pacing or price, never an answer: left out of fingerprints
NON_OUTPUT_FIELDS = ("concurrency", "rpm", "tpm", "max_retries", "timeout_s", "budget_usd", "cache_dir",
                     "progress", "prices", "api_key_env")
PAPER_TEMPLATES = ["prompts/system.j2", "prompts/question.j2", "prompts/assistant.j2"]
STAGE1_DATASET = "mede2_stage1"
STAGE2_DATASET = "mede2_stage2"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt",
                   "preprocessor_config.json", "processor_config.json", "video_preprocessor_config.json",
                   "chat_template.jinja", "chat_template.json")


class StageError(RuntimeError):
    """A stage cannot run (missing input, nothing to train on); the message says what to do."""


LAYOUT = {
    "state": "state", "logs": "logs", "cache": "cache", "train": "train", "models": "models",
    "m0": "models/m0", "stage1_adapter": "models/stage1_adapter", "m1": "models/m1",
    "stage2_adapter": "models/stage2_adapter", "m2": "models/m2",
    "curate": "curate", "stage1_questions": "curate/stage1_questions.jsonl",
    "stage2_questions": "curate/stage2_questions.jsonl",
    "distill": "distill", "stage1_data": "distill/data",
    "rollout": "rollout", "rollouts": "rollout/rollouts.jsonl",
    "judge": "judge", "judged": "judge/judged.jsonl",
    "pairs": "pairs", "eval": "eval", "report": "report", "report_prefix": "report/report",
    "simulated_calls": "simulated/calls.jsonl", "manifest": "manifest.json",
}


class Layout:
    """Where every output of a run lives: ``layout.m1`` is ``<out>/models/m1`` (see :data:`LAYOUT`)."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out).resolve()

    def __getattr__(self, name: str) -> Path:
        if name not in LAYOUT:
            raise AttributeError(name)
        return self.out / LAYOUT[name]


@dataclass
class StageResult:
    """What a stage reports back to the runner.

    Attributes:
        outputs: the files and folders it produced (hashed into its state and the manifest).
        counts: figures for the manifest and the summary.
        calls: ``BatchSummary`` dicts of the model calls of this run.
        complete: False when items are pending (failed calls a rerun retries) or nothing came out.
        message: one line for the user.
    """

    outputs: list[Path] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)
    calls: list[dict[str, Any]] = field(default_factory=list)
    complete: bool = True
    message: str = ""


@dataclass
class Context:
    """What every stage gets: the settings, the layout, the hasher and the backends.

    Attributes:
        config: the pipeline settings (input paths absolute).
        layout: output locations.
        hasher: content hashes (cached).
        runtime_roles: role name -> BackendConfig actually used (simulated URL, cache folder).
        echo: prints one line for the user.
        training_env: environment defaults of the training processes (their log verbosity).
    """

    config: PipelineConfig
    layout: Layout
    hasher: ContentHasher
    runtime_roles: dict[str, BackendConfig] = field(default_factory=dict)
    echo: Callable[[str], None] = print
    training_env: dict[str, str] = field(default_factory=dict)

    # -- models ---------------------------------------------------------------------------
    def model_path(self, label: str) -> str:
        """M0 (the base: a folder or a hub id), M1 or M2 (folders under ``models/``)."""
        if label == "M0":
            return str(self.layout.m0) if self.config.models.build_tiny else self.config.models.base
        return str({"M1": self.layout.m1, "M2": self.layout.m2}[label])

    def model_inputs(self, label: str) -> tuple[list[str], dict[str, Any]]:
        """A model as a fingerprint input: its folder (content-hashed) or its hub id (a value)."""
        path = self.model_path(label)
        return ([path], {}) if Path(path).exists() else ([], {label: path})

    def model_role(self, role: str, label: str) -> BackendConfig:
        """``roles.rollout`` / ``roles.eval`` for model ``label``, with its own response cache."""
        path = self.model_path(label)
        backend = model_backend(getattr(self.config.roles, role), path, role)
        engine_args = dict(backend.engine_args)
        if backend.backend == "local":
            engine_args.setdefault("template", self.config.models.template)
        digest = self.hasher.path(path) if Path(path).exists() else slug(path)
        cache = backend.cache_dir or str(self.layout.cache / f"{backend.backend}-{label}-{(digest or 'none')[:16]}")
        return backend.replace(engine_args=engine_args, cache_dir=cache, progress=self.progress)

    @property
    def progress(self) -> bool:
        import sys

        return sys.stderr.isatty()

    # -- API roles ------------------------------------------------------------------------
    def role(self, name: str) -> BackendConfig | None:
        return self.runtime_roles.get(name)


def declared(backend: BackendConfig | None) -> dict[str, Any] | None:
    """A backend as it enters a fingerprint: what decides answers, not pacing or price."""
    if backend is None:
        return None
    plain = to_plain(backend)
    return {k: v for k, v in plain.items() if k not in NON_OUTPUT_FIELDS}


def templates_in(settings: Any) -> list[str]:
    """Every ``*.j2`` template named anywhere in a settings tree."""
    found: list[str] = []
    if isinstance(settings, dict):
        for value in settings.values():
            found += templates_in(value)
    elif isinstance(settings, list):
        for value in settings:
            found += templates_in(value)
    elif isinstance(settings, str) and settings.endswith(".j2"):
        found.append(settings)
    return found


def call_dicts(calls: list[Any]) -> list[dict[str, Any]]:
    dicts = []
    for call in calls:
        if call is None:
            continue
        dicts.append(call if isinstance(call, dict) else dataclasses.asdict(call))
    return [c for c in dicts if c]


def seed_everything(seed: int, threads: int | None = None) -> None:
    """Seed Python, NumPy and torch before a local model samples (same draws on a rerun)."""
    from transformers import set_seed

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    set_seed(seed)


def simulation_inputs(ctx: Context, roles: list[str]) -> StageInputs:
    """When any of ``roles`` is simulated, its script and rules decide the answers: fingerprint them."""
    from mede2_plugin.pipeline import simulated
    from mede2_plugin.pipeline.config import SIMULATED

    declared_roles = dict(iter_role_backends(ctx.config.roles))
    used = [r for r in roles if r in declared_roles and declared_roles[r].base_url == SIMULATED]
    if not used or ctx.config.simulated is None:
        return StageInputs()
    rules = Path(simulated.__file__).read_bytes()
    import hashlib

    return StageInputs(files=[ctx.config.simulated.script],
                       values={"simulated_rules": hashlib.sha256(rules).hexdigest()})


def with_inputs(inputs: StageInputs, extra: StageInputs) -> StageInputs:
    inputs.files += extra.files
    inputs.values.update(extra.values)
    return inputs


def role_entry(role: str, backend: BackendConfig | None, **sampling: Any) -> dict[str, Any] | None:
    if backend is None:
        return None
    entry = {"role": role, "backend": backend.backend, "model": backend.model,
             "simulated": (backend.base_url or "").startswith("http://127.0.0.1") and backend.model.startswith("simulated")}
    if backend.base_url and not entry["simulated"]:
        entry["base_url"] = backend.base_url
    entry["sampling"] = {k: v for k, v in sampling.items() if v is not None}
    return entry


def benchmark_configs(ctx: Context) -> list[tuple[Any, str]]:
    """``(BenchmarkConfig, location)`` of every configured benchmark."""
    from mede2_plugin.evaluate.benchmarks import BENCHMARKS, BenchmarkConfig

    found = []
    for spec in ctx.config.benchmarks:
        if spec.name in BENCHMARKS:
            base = BENCHMARKS[spec.name].to_dict()
            base.update(spec.definition)
            config = BenchmarkConfig.from_dict(base)
        else:
            if not spec.definition:
                raise StageError(f"benchmarks: {spec.name!r} is not built in ({', '.join(BENCHMARKS)}); "
                                 "define it with `definition: {format, files, ...}`")
            config = BenchmarkConfig.from_dict({"name": spec.name, **spec.definition})
        found.append((config, spec.path))
    return found


def benchmark_files(config: Any, location: str) -> list[str]:
    """The files a benchmark reads (for fingerprints and the leakage check)."""
    root = Path(location)
    if root.is_file():
        return [str(root)]
    paths = [str(root / f) for f in config.files]
    for value in config.loader_options.values():
        if isinstance(value, str) and "{root}" in value:
            candidate = Path(value.replace("{root}", str(root)))
            if candidate.exists():
                paths.append(str(candidate))
    return paths
