"""Evaluating one model on one benchmark: prompts, generation through the client layer, scoring.

Output folder ``<out>/<model label>/<benchmark>/``:

* ``questions.jsonl`` - the benchmark's questions as loaded (``Question.to_dict()``);
  ``rejected.jsonl`` the rows the loader refused, with file, record and reason.
* ``generations.jsonl`` - the client layer's result rows (one per question id, ``samples``
  holding the k outputs). It is append-only: a crashed or interrupted evaluation run again
  continues where it stopped, and questions whose request failed are retried.
* ``settings.json`` - model, backend, sampling settings. A rerun with different sampling
  settings into the same folder is refused (the old generations would be mixed in).
* ``scored.jsonl`` - per question: the letter each sample chose (None: unparseable), correctness.
* ``metrics.json`` - accuracy overall and per split, unparseable and missing counts; with k > 1
  samples also ``majority_vote`` (MV@k) and ``scaling`` (pass@n and MV@n for n = 1, 2, 4..k),
  written as ``scaling.csv`` and plotted in ``scaling.png``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from mede2_plugin.client import (
    Backend,
    BackendConfig,
    BatchSummary,
    ChatRequest,
    run_batch,
)
from mede2_plugin.core.chat_format import openai_messages
from mede2_plugin.core.files import atomic_write_json, read_json
from mede2_plugin.core.jsonl import latest_records, write_jsonl
from mede2_plugin.core.questions import Question, read_questions, write_questions
from mede2_plugin.evaluate.benchmarks import BenchmarkConfig, load_benchmark
from mede2_plugin.evaluate.scaling import (
    have_matplotlib,
    plot_curves,
    scaling_curve,
    write_curve_csv,
)
from mede2_plugin.evaluate.scoring import QuestionScore, accuracy_table, score_question

SCALING_TEMPERATURE = 0.5  # the paper's Figure 5 setting


@dataclass
class EvalSettings:
    """How each question is sampled.

    Attributes:
        samples: outputs per question (k). 1 for Table 1 style accuracy; up to 32 for the
            inference-time scaling curves.
        temperature: sampling temperature; None means 0 (greedy) for one sample and the paper's
            0.5 for several.
        top_p: nucleus sampling (None: the backend's default).
        max_tokens: most new tokens per output; reasoning needs room (outputs cut off here are
            counted as ``truncated`` and usually end up unparseable).
        seed: sampling seed, where the backend supports one.
        limit: evaluate only the first N questions (smoke runs).
        plot: write ``scaling.png`` when k > 1 (skipped without matplotlib; the CSV is always written).
    """

    samples: int = 1
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int = 4096
    seed: int | None = None
    limit: int | None = None
    plot: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.samples <= 1024:
            raise ValueError(f"samples must be between 1 and 1024, got {self.samples}")
        if self.temperature is None:
            self.temperature = self.default_temperature()

    def default_temperature(self) -> float:
        return 0.0 if self.samples == 1 else SCALING_TEMPERATURE

    def config_plain(self) -> dict[str, Any]:
        """Hook of the config loader: the temperature that follows from ``samples`` is written as
        None, so a changed ``samples`` changes it too."""
        plain = {f.name: getattr(self, f.name) for f in fields(self)}
        if plain["temperature"] == self.default_temperature():
            plain["temperature"] = None
        return plain

    def generation_key(self) -> dict[str, Any]:
        """What must match for generations to be reused."""
        return {"samples": self.samples, "temperature": self.temperature, "top_p": self.top_p,
                "max_tokens": self.max_tokens, "seed": self.seed}


@dataclass
class BenchmarkRun:
    """What :func:`evaluate_benchmark` produced."""

    benchmark: str
    model: str
    folder: Path
    metrics: dict[str, Any]
    batch: BatchSummary | None


def build_requests(questions: list[Question], settings: EvalSettings) -> list[ChatRequest]:
    """One chat request per question, in the think/answer format the model was trained on."""
    return [ChatRequest(id=q.id, messages=openai_messages(q, embed_images=False), n=settings.samples,
                        temperature=settings.temperature, top_p=settings.top_p,
                        max_tokens=settings.max_tokens, seed=settings.seed)
            for q in questions]


def _check_settings(folder: Path, record: dict[str, Any]) -> None:
    path = folder / "settings.json"
    if path.exists():
        old, _ = read_json(path)
        keys = ("model", "backend", "generation")
        if any(old.get(k) != record.get(k) for k in keys):
            changed = [k for k in keys if old.get(k) != record.get(k)]
            raise ValueError(f"{folder}: generations were made with other {', '.join(changed)} "
                             f"({ {k: old.get(k) for k in changed} }); use another --out or --label, "
                             f"or delete {folder / 'generations.jsonl'}")
    atomic_write_json(path, record)


def score_folder(folder: Path, benchmark: BenchmarkConfig, model: str, plot: bool = True) -> dict[str, Any]:
    """Score ``generations.jsonl`` against ``questions.jsonl`` and write scored/metrics/scaling files."""
    questions = read_questions(folder / "questions.jsonl")
    by_id = latest_records(folder / "generations.jsonl")
    scores: list[QuestionScore] = [score_question(q, by_id.get(q.id), benchmark.splits) for q in questions]
    write_jsonl(folder / "scored.jsonl", (s.to_dict() for s in scores))
    metrics: dict[str, Any] = {"benchmark": benchmark.name, "title": benchmark.title, "model": model,
                               "modality": benchmark.modality, **accuracy_table(scores, benchmark.splits)}
    sample_counts = {len(s.letters) for s in scores if s.answered}
    k = max(sample_counts) if sample_counts else 0
    metrics["samples_per_question"] = k
    if k > 1:
        curve = scaling_curve([(s.letters, s.answer) for s in scores if s.answered])
        metrics["scaling"] = curve
        metrics["majority_vote"] = curve[-1]["majority_at_n"] if curve else None
        write_curve_csv(folder / "scaling.csv", {benchmark.name: {model: curve}})
        if plot and have_matplotlib():
            plot_curves(folder / "scaling.png", {benchmark.name: {model: curve}}, {benchmark.name: benchmark.title})
    atomic_write_json(folder / "metrics.json", metrics)
    return metrics


def evaluate_benchmark(benchmark: BenchmarkConfig, location: str | Path, backend: BackendConfig,
                       out_dir: str | Path, settings: EvalSettings | None = None,
                       label: str | None = None, generate: bool = True,
                       engine: Backend | None = None, allow_outside_media: bool = False) -> BenchmarkRun:
    """Load, generate (resumably) and score one benchmark for one model.

    Args:
        benchmark: which benchmark.
        location: the benchmark's root folder (public release layout) or a single file.
        backend: the model and where it runs (``local``, ``vllm``, ``openai``-compatible, ...).
        out_dir: evaluation root; results go to ``out_dir/<label>/<benchmark.name>``.
        settings: sampling settings.
        label: the model's name in reports; default the model folder's name.
        generate: False only rescores what ``generations.jsonl`` already holds.
        engine: a built backend to answer with, e.g. one :class:`~mede2_plugin.client.SharedBackend`
            for all benchmarks of a model, so in-process weights load once (default: one per call).
        allow_outside_media: allow images outside the benchmark and media folders.
    """
    settings = settings or EvalSettings()
    label = label or Path(backend.model.rstrip("/")).name or backend.model
    folder = Path(out_dir) / label / benchmark.name
    loaded = load_benchmark(benchmark, location, folder / "media", allow_outside_media)
    questions = loaded.questions[: settings.limit] if settings.limit else loaded.questions
    if not questions:
        reasons = "; ".join(str(r) for r in loaded.rejected[:3])
        raise ValueError(f"{benchmark.name}: no questions loaded from {location}" + (f" ({reasons})" if reasons else ""))
    summary = None
    if generate:
        _check_settings(folder, {"model": backend.model, "backend": backend.backend, "label": label,
                                 "benchmark": benchmark.to_dict(), "location": str(location),
                                 "generation": settings.generation_key(), "settings": asdict(settings)})
    write_questions(folder / "questions.jsonl", questions)
    write_jsonl(folder / "rejected.jsonl", (r.to_dict() for r in loaded.rejected))
    if generate:
        summary = run_batch(build_requests(questions, settings), folder / "generations.jsonl", backend,
                            stage=f"eval:{benchmark.name}", backend=engine)
    metrics = score_folder(folder, benchmark, label, plot=settings.plot)
    metrics["rejected_by_loader"] = len(loaded.rejected)
    metrics["skipped_by_loader"] = loaded.skipped
    atomic_write_json(folder / "metrics.json", metrics)
    return BenchmarkRun(benchmark.name, label, folder, metrics, summary)
