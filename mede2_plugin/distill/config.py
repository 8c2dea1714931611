"""Settings of ``mede2 distill``: documented dataclasses, loadable from YAML.

Example ``distill.yaml`` (every key optional; the defaults are the paper's teachers)::

    questions: {path: curate_out/curated_text.jsonl}
    output_dir: distill_out
    teachers:
      - name: deepseek-r1
        backend: {backend: openai, model: deepseek-reasoner, base_url: https://api.deepseek.com/v1,
                  api_key_env: DEEPSEEK_API_KEY}
        samples: 2
      - name: qwq-32b
        backend: {backend: openai, model: Qwen/QwQ-32B, base_url: http://localhost:8000/v1}
      - name: o1
        backend: {backend: openai, model: o1}
        reasoning: summary
        expand_summary: true
    filter: {min_reasoning_chars: 300, judge: {backend: gemini, model: gemini-2.5-pro}}
    build: {formats: [mede2_sft, messages], dataset_name: mede2_stage1}

Load with :func:`load_distill_config` (file, then ``key.path=value`` overrides).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mede2_plugin.client.config import BackendConfig
from mede2_plugin.core.media import MediaPolicy
from mede2_plugin.core.settings import load_config
from mede2_plugin.data.source import BankSource

REASONING_MODES = ("auto", "reasoning_content", "think_tags", "summary")
BUILD_FORMATS = ("mede2_sft", "messages")
STEPS = ("generate", "filter", "build")


@dataclass
class TeacherConfig:
    """A reasoning model that writes demonstrations, and how its reasoning is read.

    Attributes:
        name: label of the teacher (file names, trace ids, the selection order).
        backend: where the calls go.
        samples: traces asked per question (several are kept; the selection picks among them).
        temperature: sampling temperature (None: the server's default; o1 accepts no other).
        top_p: nucleus sampling (None: the server's default).
        max_tokens: most new tokens per reply; a reply that hits it is ``truncated``.
        extra: extra request fields sent as they are, e.g. ``{max_completion_tokens: 32768}`` for
            OpenAI reasoning models, which refuse ``max_tokens``.
        reasoning: where the reasoning is expected: ``reasoning_content`` (the server's separate
            field, e.g. DeepSeek's API or vLLM with a reasoning parser) or ``think_tags``
            (``<think>..</think>`` in the text); either reads the field, else the tags, so a
            server that wraps it the other way loses nothing, and a reply with neither has
            ``no_reasoning``. ``summary``: the reply is only a summary (o1), any reasoning in it is
            ignored. ``auto``: the field, else the tags, else a summary. Every reply format read
            is listed in :mod:`mede2_plugin.distill.traces`.
        expand_summary: for a summary-only reply, the paper's expansion step: ask the teacher, in
            the same conversation, to expand its summary into the complete reasoning process.
        expand_only_correct: expand only summaries whose answer is right and complete (the
            others would be filtered out anyway).
        prompt_template: the question prompt (default: the paper's Appendix-A user turn).
        paper_system: send the paper's Appendix-A system prompt (reasoning models such as R1 are
            best asked without a system prompt, so off by default).
        expansion_template: the expansion request.
        expansion_temperature: temperature of the expansion request.
        expansion_max_tokens: most new tokens of the expansion reply.
    """

    name: str = "teacher"
    backend: BackendConfig = field(default_factory=lambda: BackendConfig(backend="openai", model="deepseek-reasoner"))
    samples: int = 2
    temperature: float | None = 0.6
    top_p: float | None = None
    max_tokens: int | None = 16384
    extra: dict[str, Any] = field(default_factory=dict)
    reasoning: str = "auto"
    expand_summary: bool = False
    expand_only_correct: bool = True
    prompt_template: str = "prompts/distill_teacher.j2"
    paper_system: bool = False
    expansion_template: str = "prompts/distill_expand.j2"
    expansion_temperature: float | None = None
    expansion_max_tokens: int | None = 16384

    def __post_init__(self) -> None:
        if self.reasoning not in REASONING_MODES:
            raise ValueError(f"teacher {self.name!r}: reasoning must be one of {REASONING_MODES}, got {self.reasoning!r}")
        if self.samples < 1:
            raise ValueError(f"teacher {self.name!r}: samples must be >= 1")
        if "/" in self.name or not self.name.strip():
            raise ValueError(f"teacher name {self.name!r} must be non-empty and contain no '/'")


def default_teachers() -> list[TeacherConfig]:
    """The paper's teachers: DeepSeek-R1 and QwQ-32B (OpenAI-compatible servers), o1 (OpenAI)."""
    return [
        TeacherConfig(name="deepseek-r1",
                      backend=BackendConfig(backend="openai", model="deepseek-reasoner",
                                            base_url="https://api.deepseek.com/v1", api_key_env="DEEPSEEK_API_KEY"),
                      samples=2, temperature=0.6, reasoning="auto"),
        TeacherConfig(name="qwq-32b",
                      backend=BackendConfig(backend="openai", model="Qwen/QwQ-32B",
                                            base_url="http://localhost:8000/v1", api_key_env="VLLM_API_KEY"),
                      samples=2, temperature=0.6, top_p=0.95, reasoning="auto"),
        TeacherConfig(name="o1", backend=BackendConfig(backend="openai", model="o1"),
                      samples=1, temperature=None, max_tokens=None, extra={"max_completion_tokens": 32768},
                      reasoning="summary", expand_summary=True, expansion_max_tokens=None),
    ]


@dataclass
class TraceFilterConfig:
    """The trace filter (paper 3.2): correct, well structured, coherent.

    Rule checks, in this order (a trace's reason is its first failure): ``truncated`` (the reply
    or its expansion hit the token limit, or a ``<think>``/``\\boxed{`` is left open),
    ``missing_boxed``, ``no_answer`` / ``wrong_answer`` (shared extractor on the final answer),
    ``no_reasoning``, ``bad_structure`` (the assembled ``<think>..</think><answer>..</answer>``
    is not exactly one think block then one answer block, e.g. stray tags in the reasoning),
    ``too_short`` / ``too_long`` (reasoning length in characters). Traces passing every rule are
    rated by the judge; below ``min_judge_score`` on either criterion -> ``incoherent``.

    Attributes:
        require_boxed: the final answer must hold a complete ``\\boxed{}``.
        min_reasoning_chars: shortest reasoning kept.
        max_reasoning_chars: longest reasoning kept (keep it under the training ``cutoff_len``).
        judge: the coherence judge; None skips the judge (rule checks only).
        judge_template: the judge prompt (JSON reply with 1-5 scores).
        judge_temperature: judge sampling temperature.
        judge_max_tokens: most new tokens of a judge reply.
        min_judge_score: lowest score (1-5) kept on ``logical_structure`` and on ``coherence``.
        use_json_schema: ask the judge backend for schema-constrained JSON.
    """

    require_boxed: bool = True
    min_reasoning_chars: int = 200
    max_reasoning_chars: int = 40000
    judge: BackendConfig | None = field(default_factory=lambda: BackendConfig(backend="gemini", model="gemini-2.5-pro"))
    judge_template: str = "prompts/distill_judge.j2"
    judge_temperature: float | None = 0.0
    judge_max_tokens: int | None = 2048
    min_judge_score: int = 4
    use_json_schema: bool = True


@dataclass
class SelectConfig:
    """Which passing traces become training samples (the paper does not say; this is our rule).

    Passing traces of a question are ranked by: the judge's total score (higher first), then the
    teacher's position in ``teacher_order`` (default: the order of ``teachers``), then reasoning
    length (``prefer: shorter`` first, or ``longer``), then sample number. The first
    ``traces_per_question`` are taken.

    Attributes:
        traces_per_question: training samples per question (1: one demonstration each).
        teacher_order: teacher preference on equal judge scores (empty: the ``teachers`` order).
        prefer: ``shorter`` or ``longer`` reasoning on equal score and teacher.
    """

    traces_per_question: int = 1
    teacher_order: list[str] = field(default_factory=list)
    prefer: str = "shorter"

    def __post_init__(self) -> None:
        if self.prefer not in ("shorter", "longer"):
            raise ValueError(f"prefer must be 'shorter' or 'longer', got {self.prefer!r}")
        if self.traces_per_question < 1:
            raise ValueError("traces_per_question must be >= 1")


@dataclass
class BuildConfig:
    """The Stage-I dataset files and their ``dataset_info.json`` entries.

    Attributes:
        formats: ``mede2_sft`` (native records, entry ``dataset_name`` with formatting
            ``mede2_sft``) and/or ``messages`` (the paper's Appendix-A OpenAI messages, entry
            ``<dataset_name>_messages`` with sharegpt formatting, or ``dataset_name`` itself when
            it is the only format).
        dataset_name: name of the entry the recipe uses (``recipes/stage1_lora.yaml``:
            ``mede2_stage1``).
        dataset_dir: folder of the data files and ``dataset_info.json`` (default:
            ``<output_dir>/data``); give it as the recipe's ``dataset_dir``.
        final: the ``<answer>`` content: ``teacher`` (the teacher's final answer text, which holds
            the ``\\boxed{}``) or ``boxed`` (just ``\\boxed{X}``).
        force: replace a different entry of the same name in an existing ``dataset_info.json``.
    """

    formats: list[str] = field(default_factory=lambda: list(BUILD_FORMATS))
    dataset_name: str = "mede2_stage1"
    dataset_dir: str | None = None
    final: str = "teacher"
    force: bool = False

    def __post_init__(self) -> None:
        unknown = [f for f in self.formats if f not in BUILD_FORMATS]
        if unknown or not self.formats:
            raise ValueError(f"formats must be a non-empty subset of {BUILD_FORMATS}, got {self.formats}")
        if self.final not in ("teacher", "boxed"):
            raise ValueError(f"final must be 'teacher' or 'boxed', got {self.final!r}")


@dataclass
class DistillConfig:
    """Everything ``mede2 distill`` does: generate traces, filter them, build the dataset.

    Attributes:
        questions: the curated questions (default: curate's text subset).
        output_dir: folder of ``generate/``, ``filter/``, ``build/`` and ``report.json``.
        text_only: leave out questions with images (Stage-I is text-only, as in the paper).
        media_dir: folder relative image paths are relative to (with ``text_only: false``; default:
            the question file's folder); images may lie in it and in ``media_roots``.
        media_roots: further folders the questions' images may lie in.
        allow_outside_media: allow images anywhere (absolute paths, ``file://``, ``..``).
        embed_images: send local images as data URLs.
        prompts: prompt templates replaced by your own jinja files, ``{NAME: PATH}``.
        teachers: the teachers.
        filter: the trace filter.
        select: the choice of traces per question.
        build: the output dataset.
    """

    questions: BankSource = field(default_factory=lambda: BankSource(path="curate_out/curated_text.jsonl"))
    output_dir: str = "distill_out"
    text_only: bool = True
    media_dir: str | None = None
    media_roots: list[str] = field(default_factory=list)
    allow_outside_media: bool = False
    embed_images: bool = True
    prompts: dict[str, str] = field(default_factory=dict)
    teachers: list[TeacherConfig] = field(default_factory=default_teachers)
    filter: TraceFilterConfig = field(default_factory=TraceFilterConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    build: BuildConfig = field(default_factory=BuildConfig)

    def __post_init__(self) -> None:
        names = [t.name for t in self.teachers]
        if not names:
            raise ValueError("at least one teacher is needed")
        if len(set(names)) != len(names):
            raise ValueError(f"teacher names must differ: {names}")
        unknown = [n for n in self.select.teacher_order if n not in names]
        if unknown:
            raise ValueError(f"select.teacher_order names unknown teachers {unknown}; teachers: {names}")

    @property
    def out(self) -> Path:
        return Path(self.output_dir)

    def media(self) -> MediaPolicy:
        """Where the questions' images may come from."""
        folders = self.questions.media_roots() if self.questions.path else []
        return MediaPolicy.of(self.media_dir or (folders[0] if folders else None),
                              [*folders, *self.media_roots], self.allow_outside_media)

    @property
    def dataset_dir(self) -> Path:
        return Path(self.build.dataset_dir) if self.build.dataset_dir else self.out / "data"


def load_distill_config(source: str | Path | dict[str, Any] | None = None,
                        overrides: list[str] | tuple[str, ...] = ()) -> DistillConfig:
    """The distill settings: defaults, then ``source`` (YAML file or dict, or its ``distill:``
    section), then ``key.path=value`` overrides."""
    return load_config(DistillConfig, source, overrides, section="distill")
