"""Settings of ``mede2 curate``: documented dataclasses, loadable from YAML.

Example ``curate.yaml`` (every key optional; the defaults are the paper's choices)::

    bank: {path: data/US/train.jsonl, format: medqa}
    output_dir: curate_out
    difficulty:
      baseline: {backend: {backend: openai, model: gpt-4o}, samples: 1, temperature: 0.0}
      strong:
        - {backend: {backend: gemini, model: gemini-2.5-pro}, samples: 4, temperature: 0.7}
      min_strong_correct: 1
    leakage:
      benchmarks:
        - {path: MedQA/US/test.jsonl, format: medqa}
        - {path: MedXpertQA/MM/test.jsonl, format: medxpertqa}
      threshold: 0.5

Load with :func:`load_curate_config` (file, then ``key.path=value`` overrides).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mede2_plugin.client.config import BackendConfig
from mede2_plugin.core.media import MediaPolicy
from mede2_plugin.core.settings import load_config
from mede2_plugin.data.source import BankSource

STEPS = ("load", "leakage", "difficulty", "classify", "strip")
CATEGORIES = ("pattern_recognition", "knowledge_recall", "reasoning")


@dataclass
class SolverConfig:
    """A model that answers questions, and how it is asked.

    Attributes:
        backend: where the calls go (:class:`~mede2_plugin.client.BackendConfig`).
        name: label used in file names and records (default: the model name, made file-safe).
        samples: answers per question (the paper: 1 for GPT-4o, 4 for Gemini-2.5-Pro).
        temperature: sampling temperature (None: the backend's default).
        max_tokens: most new tokens per answer (None: the backend's default).
        prompt_template: user-turn template; gets ``question``, ``options``, ``patient_info``,
            ``n_images``.
        system_template: a system-turn template, or None.
        paper_system: send the paper's Appendix-A system prompt as the system turn (used when
            ``system_template`` is None).
        send_images: attach the question's images to the request.
    """

    backend: BackendConfig = field(default_factory=lambda: BackendConfig(backend="openai", model="gpt-4o"))
    name: str | None = None
    samples: int = 1
    temperature: float | None = 0.0
    max_tokens: int | None = 4096
    prompt_template: str = "prompts/curate_solver.j2"
    system_template: str | None = None
    paper_system: bool = False
    send_images: bool = True

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")

    @property
    def label(self) -> str:
        from mede2_plugin.core.steps import slug

        return slug(self.name or self.backend.model)


def _default_strong() -> list[SolverConfig]:
    return [SolverConfig(backend=BackendConfig(backend="gemini", model="gemini-2.5-pro"),
                         samples=4, temperature=0.7)]


@dataclass
class DifficultyConfig:
    """The difficulty filter (paper 3.1): drop what the baseline solves, keep what the strong solves.

    A question is dropped as ``baseline_solved`` when the baseline solver is right at least
    ``baseline_solved_min`` times; otherwise it is kept when the strong solvers together are right
    at least ``min_strong_correct`` times over all their attempts (the paper: Gemini-2.5-Pro,
    4 attempts, at least one right; for image questions the paper uses two "experts": list two
    solvers under ``strong``). ``max_strong_correct`` can also drop questions the strong solvers
    always get right (off by default, as in the paper).

    Attributes:
        baseline: the baseline solver (paper: GPT-4o, one attempt); None skips it.
        strong: the strong solvers (paper: Gemini-2.5-Pro, k=4).
        baseline_solved_min: baseline right this many times -> ``baseline_solved``.
        min_strong_correct: strong right fewer times than this -> ``strong_never_solved``
            (with the default 1: never solved).
        max_strong_correct: strong right more times than this -> ``strong_always_solved``;
            None: no upper bound.
        drop_baseline_solved: apply the baseline rule (False keeps the attempts for audit only).
        strong_on_all: ask the strong solvers about every question, also those the baseline
            solved (costs more, but any threshold can then be changed without new calls).
    """

    baseline: SolverConfig | None = field(default_factory=SolverConfig)
    strong: list[SolverConfig] = field(default_factory=_default_strong)
    baseline_solved_min: int = 1
    min_strong_correct: int = 1
    max_strong_correct: int | None = None
    drop_baseline_solved: bool = True
    strong_on_all: bool = False

    def __post_init__(self) -> None:
        labels = [s.label for s in self.strong] + ([self.baseline.label] if self.baseline else [])
        if len(set(labels)) != len(labels):
            raise ValueError(f"solver labels must differ (give each a name): {labels}")


@dataclass
class ClassifyConfig:
    """The image-question classifier (paper 3.1): drop pattern recognition and knowledge recall.

    Attributes:
        classifier: the classifying model (paper: GPT-4o).
        prompt_template: the classifier prompt; must ask for JSON ``{"category", "rationale"}``.
        samples: classifications per question; the majority decides (ties go to the category
            listed first in ``tie_order``).
        temperature: sampling temperature.
        max_tokens: most new tokens per classification.
        send_images: show the classifier the images too.
        drop_categories: categories dropped (the paper: pattern recognition, knowledge recall).
        tie_order: preference when votes tie (default keeps the question: reasoning first).
        text_questions: ``pass`` (text-only questions go through unclassified, as in the paper)
            or ``classify``.
        use_json_schema: ask the backend for schema-constrained JSON.
    """

    classifier: BackendConfig = field(default_factory=lambda: BackendConfig(backend="openai", model="gpt-4o"))
    prompt_template: str = "prompts/curate_classify.j2"
    samples: int = 1
    temperature: float | None = 0.0
    max_tokens: int | None = 1024
    send_images: bool = True
    drop_categories: list[str] = field(default_factory=lambda: ["pattern_recognition", "knowledge_recall"])
    tie_order: list[str] = field(default_factory=lambda: ["reasoning", "knowledge_recall", "pattern_recognition"])
    text_questions: str = "pass"
    use_json_schema: bool = True

    def __post_init__(self) -> None:
        for name in self.drop_categories + self.tie_order:
            if name not in CATEGORIES:
                raise ValueError(f"unknown category {name!r}; known: {', '.join(CATEGORIES)}")
        if self.text_questions not in ("pass", "classify"):
            raise ValueError(f"text_questions must be 'pass' or 'classify', got {self.text_questions!r}")


@dataclass
class StripConfig:
    """Caption stripping (paper 3.3): rewrite image questions so they no longer describe the image.

    The model returns ``{"patient_info", "question", "removed"}``; options, answer and images are
    never taken from the reply (they stay the original ones). The rewrite is checked:

    * ``rewrite_unparsable``: no JSON with a non-empty ``question``;
    * ``patient_facts_changed``: a number of the original text (age, vital sign, lab value) is
      missing from the rewrite without being inside a ``removed`` phrase, or the rewrite has a
      number the original did not have;
    * ``answer_leaked``: the rewrite contains the correct option's text and the original did not;
    * ``question_changed``: the word overlap of the final question sentence (the ask) of the
      original and of the rewrite is below ``min_ask_overlap``;
    * ``over_deleted``: the rewrite is shorter than ``min_length_ratio`` of the original.

    Attributes:
        rewriter: the rewriting model (paper: GPT-4o with human review).
        prompt_template: the rewrite prompt.
        temperature: sampling temperature.
        max_tokens: most new tokens per rewrite.
        send_images: show the rewriter the images (not needed to find descriptions in the text).
        check_numbers: run the ``patient_facts_changed`` check.
        min_ask_overlap: ``question_changed`` below this word overlap (0 turns the check off).
        min_length_ratio: ``over_deleted`` below this length ratio (0 turns the check off).
        on_check_failure: ``drop`` the question, or ``keep_original`` (keep it unrewritten,
            flagged in its metadata for review).
        text_questions: ``pass`` (only image questions are rewritten) or ``strip``.
        use_json_schema: ask the backend for schema-constrained JSON.
    """

    rewriter: BackendConfig = field(default_factory=lambda: BackendConfig(backend="openai", model="gpt-4o"))
    prompt_template: str = "prompts/curate_strip.j2"
    temperature: float | None = 0.0
    max_tokens: int | None = 2048
    send_images: bool = False
    check_numbers: bool = True
    min_ask_overlap: float = 0.5
    min_length_ratio: float = 0.3
    on_check_failure: str = "drop"
    text_questions: str = "pass"
    use_json_schema: bool = True

    def __post_init__(self) -> None:
        if self.on_check_failure not in ("drop", "keep_original"):
            raise ValueError(f"on_check_failure must be 'drop' or 'keep_original', got {self.on_check_failure!r}")
        if self.text_questions not in ("pass", "strip"):
            raise ValueError(f"text_questions must be 'pass' or 'strip', got {self.text_questions!r}")


@dataclass
class LeakageConfig:
    """Leakage check: flag training questions too similar to an evaluation benchmark question.

    Texts (patient information, question, option texts) are normalised (Unicode NFKC, case
    folded, punctuation removed, whitespace collapsed) and cut into word ``ngram``-shingles.
    MinHash signatures (``num_perm`` hash functions) with LSH banding find candidate pairs; each
    candidate's exact Jaccard similarity of the shingle sets is then computed, and a training
    question whose best match reaches ``threshold`` is flagged. The bands are chosen so that a
    pair at exactly ``threshold`` becomes a candidate with probability >= 0.99.

    Attributes:
        benchmarks: the evaluation banks (any loader format).
        ngram: words per shingle (texts shorter than this are one shingle).
        num_perm: MinHash hash functions.
        threshold: Jaccard similarity at or above which a question is flagged.
        include_options: compare option texts too (not just the stem).
        drop: drop flagged questions (``leaked``); False only flags them (kept, with the match).
        seed: seed of the hash functions.
    """

    benchmarks: list[BankSource] = field(default_factory=list)
    ngram: int = 5
    num_perm: int = 128
    threshold: float = 0.5
    include_options: bool = True
    drop: bool = True
    seed: int = 1

    def __post_init__(self) -> None:
        if not 0 < self.threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")
        if self.ngram < 1 or self.num_perm < 1:
            raise ValueError("ngram and num_perm must be >= 1")


@dataclass
class CurateConfig:
    """Everything ``mede2 curate`` does, step by step.

    Attributes:
        bank: the input question bank (step ``load``).
        output_dir: where every step writes its folder (``load/``, ``difficulty/``, ...), the
            final ``curated.jsonl`` (plus ``curated_text.jsonl`` / ``curated_image.jsonl``) and
            ``report.json``.
        steps: the steps of ``mede2 curate all``, in order; each reads the previous one's
            ``kept.jsonl``. The default runs the leakage check first, so no call is spent on a
            question that will be dropped as leaked.
        media_dir: folder that relative image paths of the bank are relative to (default: the
            bank's folder); images may lie in it, in the bank's folders and in ``media_roots``.
        media_roots: further folders the bank's images may lie in.
        allow_outside_media: allow images anywhere (absolute paths, ``file://``, ``..`` out of the
            data folders); off, such an image fails its question, which is rejected with the reason.
        embed_images: send local images as data URLs (else as file URIs).
        prompts: prompt templates replaced by your own jinja files, ``{NAME: PATH}`` (NAME as in
            ``templates/prompts/``, e.g. ``curate_solver``); see :mod:`mede2_plugin.core.prompts`.
        difficulty: the difficulty filter.
        classify: the image-question classifier.
        strip: caption stripping.
        leakage: the leakage check.
    """

    bank: BankSource = field(default_factory=BankSource)
    output_dir: str = "curate_out"
    steps: list[str] = field(default_factory=lambda: list(STEPS))
    media_dir: str | None = None
    media_roots: list[str] = field(default_factory=list)
    allow_outside_media: bool = False
    embed_images: bool = True
    prompts: dict[str, str] = field(default_factory=dict)
    difficulty: DifficultyConfig = field(default_factory=DifficultyConfig)
    classify: ClassifyConfig = field(default_factory=ClassifyConfig)
    strip: StripConfig = field(default_factory=StripConfig)
    leakage: LeakageConfig = field(default_factory=LeakageConfig)

    def __post_init__(self) -> None:
        unknown = [s for s in self.steps if s not in STEPS]
        if unknown:
            raise ValueError(f"unknown step(s) {unknown}; known: {', '.join(STEPS)}")

    @property
    def out(self) -> Path:
        return Path(self.output_dir)

    def media(self) -> MediaPolicy:
        """Where the bank's images may come from (see :class:`~mede2_plugin.core.media.MediaPolicy`)."""
        folders = self.bank.media_roots() if self.bank.path else []
        return MediaPolicy.of(self.media_dir or (folders[0] if folders else None),
                              [*folders, *self.media_roots], self.allow_outside_media)


def load_curate_config(source: str | Path | dict[str, Any] | None = None,
                       overrides: list[str] | tuple[str, ...] = ()) -> CurateConfig:
    """The curate settings: defaults, then ``source`` (YAML file or dict, or its ``curate:``
    section), then ``key.path=value`` overrides."""
    return load_config(CurateConfig, source, overrides, section="curate")
