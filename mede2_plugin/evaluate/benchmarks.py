"""The paper's benchmarks as small declarative configs (in the spirit of lm-evaluation-harness tasks).

A :class:`BenchmarkConfig` names the question-bank loader, the files inside the benchmark's
public release, the loader options and the fields accuracy is broken down by. The built-ins are
in :data:`BENCHMARKS`; a YAML file with a list of the same fields adds more
(:func:`load_benchmark_configs`).

Where the files are: ``mede2 eval --benchmark NAME=PATH`` with PATH the unpacked release folder
(or one file), or ``--data-root DIR`` with the release unpacked as ``DIR/<default_dir>``:

============================  ==============  =================================================
benchmark                     default_dir     files inside it
============================  ==============  =================================================
medqa (4 options)             MedQA           data_clean/questions/US/4_options/phrases_no_exclude_test.jsonl
medqa_5op                     MedQA           data_clean/questions/US/test.jsonl
medbullets_op4 / _op5         Medbullets      medbullets_op4.csv / medbullets_op5.csv
medxpertqa_mm / _text         MedXpertQA      MM/test.jsonl (+ images/) / Text/test.jsonl
mmmu_health                   MMMU            <Subject>/validation-*.parquet (health subjects)
mmmu_pro_health               MMMU_Pro        standard (10 options)/test-*.parquet
============================  ==============  =================================================
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mede2_plugin.core.questions import Question
from mede2_plugin.data import HEALTH_SUBJECTS, LoadResult, Rejected, load_bank


@dataclass
class BenchmarkConfig:
    """One benchmark: where its questions come from and how its accuracy is split.

    Attributes:
        name: short id, used for output folders and ``--benchmark NAME``.
        title: the name shown in reports (``MedXpertQA-MM``).
        format: the question-bank loader (a key of ``mede2_plugin.data.FORMATS``).
        files: files or folders relative to the benchmark's root, loaded and concatenated.
        loader_options: keyword options of the loader; a string value may contain ``{root}``
            (the benchmark root) or ``{media}`` (a folder under the evaluation output, for loaders
            that write images out).
        splits: fields to break accuracy down by: a ``Question`` attribute (``question_type``,
            ``source``, ``modality``) or ``metadata.KEY`` (``metadata.medical_task``).
        num_options: when set, questions with another number of options are rejected.
        modality: ``text`` or ``image``; a report groups benchmarks by it.
        default_dir: the root's folder name under ``--data-root``.
        description: one line for ``mede2 eval --list``.
    """

    name: str
    title: str
    format: str
    files: list[str]
    loader_options: dict[str, Any] = field(default_factory=dict)
    splits: list[str] = field(default_factory=list)
    num_options: int | None = None
    modality: str = "text"
    default_dir: str = ""
    description: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchmarkConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"benchmark {data.get('name')!r}: unknown field(s) {', '.join(unknown)}")
        missing = sorted({"name", "format", "files"} - set(data))
        if missing:
            raise ValueError(f"benchmark {data.get('name')!r}: missing field(s) {', '.join(missing)}")
        data = {"title": data["name"], **data}
        if isinstance(data["files"], str):
            data["files"] = [data["files"]]
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


MEDXPERTQA_SPLITS = ["question_type", "metadata.medical_task", "metadata.body_system"]

BENCHMARKS: dict[str, BenchmarkConfig] = {b.name: b for b in [
    BenchmarkConfig("medqa", "MedQA", "medqa", ["data_clean/questions/US/4_options/phrases_no_exclude_test.jsonl"],
                    splits=["metadata.meta_info"], num_options=4, default_dir="MedQA",
                    description="MedQA (USMLE) test, 4 options, 1273 questions"),
    BenchmarkConfig("medqa_5op", "MedQA (5 options)", "medqa", ["data_clean/questions/US/test.jsonl"],
                    splits=["metadata.meta_info"], num_options=5, default_dir="MedQA",
                    description="MedQA (USMLE) test, 5 options, 1273 questions"),
    BenchmarkConfig("medbullets_op4", "Medbullets-4", "medbullets", ["medbullets_op4.csv"],
                    splits=["metadata.figure_not_shipped"], num_options=4, default_dir="Medbullets",
                    description="Medbullets, 4 options, 308 questions (figures not shipped: text-only)"),
    BenchmarkConfig("medbullets_op5", "Medbullets-5", "medbullets", ["medbullets_op5.csv"],
                    splits=["metadata.figure_not_shipped"], num_options=5, default_dir="Medbullets",
                    description="Medbullets, 5 options, 308 questions (figures not shipped: text-only)"),
    BenchmarkConfig("medxpertqa_mm", "MedXpertQA-MM", "medxpertqa", ["MM/test.jsonl"],
                    loader_options={"images_dir": "{root}/images"}, splits=MEDXPERTQA_SPLITS,
                    modality="image", default_dir="MedXpertQA",
                    description="MedXpertQA multimodal test, 5 options, 2000 questions"),
    BenchmarkConfig("medxpertqa_text", "MedXpertQA-Text", "medxpertqa", ["Text/test.jsonl"],
                    splits=MEDXPERTQA_SPLITS, default_dir="MedXpertQA",
                    description="MedXpertQA text test, 10 options, 2450 questions"),
    BenchmarkConfig("mmmu_health", "MMMU-Health", "mmmu", ["."],
                    loader_options={"split": "validation", "subjects": list(HEALTH_SUBJECTS),
                                    "images_dir": "{media}"},
                    splits=["metadata.subject"], modality="image", default_dir="MMMU",
                    description="MMMU validation, five health subjects (multiple-choice only)"),
    BenchmarkConfig("mmmu_pro_health", "MMMU-Pro-Health", "mmmu_pro", ["standard (10 options)"],
                    loader_options={"split": "test", "subjects": list(HEALTH_SUBJECTS), "images_dir": "{media}"},
                    splits=["metadata.subject"], num_options=10, modality="image", default_dir="MMMU_Pro",
                    description="MMMU-Pro standard (10 options), five health subjects"),
]}


def load_benchmark_configs(path: str | Path) -> dict[str, BenchmarkConfig]:
    """Benchmarks from a YAML file: a list of :class:`BenchmarkConfig` mappings (or ``benchmarks:`` list)."""
    import yaml

    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle) or []
    if isinstance(data, dict):
        data = data.get("benchmarks", [])
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of benchmarks")
    configs = {}
    for index, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: entry {index} is not a mapping")
        try:
            config = BenchmarkConfig.from_dict(entry)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: entry {index}: {err}") from None
        configs[config.name] = config
    return configs


@dataclass
class BenchmarkSpec:
    """One benchmark to evaluate on, and where its public release lies.

    Attributes:
        name: a built-in benchmark of :data:`BENCHMARKS` (``medqa``, ``medbullets_op4``,
            ``medxpertqa_mm``, ``mmmu_health``, ...) or a new name defined by ``definition``.
        path: the benchmark's root folder (public release layout) or a single file; empty:
            ``<data_root>/<default_dir>``.
        definition: fields of :class:`BenchmarkConfig` for a benchmark that is not built in
            (``format``, ``files``, ``title``, ``splits``, ...), or overrides of a built-in one.
        leakage: also use this benchmark's questions in the curation leakage check (``mede2 run``).
    """

    name: str = ""
    path: str = ""
    definition: dict[str, Any] = field(default_factory=dict)
    leakage: bool = True


def parse_benchmark_spec(text: str) -> BenchmarkSpec:
    """``NAME`` or ``NAME=PATH`` (the command-line form of :class:`BenchmarkSpec`)."""
    name, _, path = text.partition("=")
    return BenchmarkSpec(name=name.strip(), path=path.strip())


def resolve_benchmarks(specs: list[BenchmarkSpec], data_root: str | Path | None = None,
                       known: dict[str, BenchmarkConfig] | None = None) -> list[tuple[BenchmarkConfig, Path]]:
    """``(BenchmarkConfig, location)`` of every spec: a built-in (its ``definition`` over it) or a
    new one; a spec without a path lies under ``data_root`` in its default folder."""
    known = dict(BENCHMARKS if known is None else known)
    resolved = []
    for spec in specs:
        if spec.name in known:
            config = BenchmarkConfig.from_dict({**known[spec.name].to_dict(), **spec.definition})
        elif spec.definition:
            config = BenchmarkConfig.from_dict({"name": spec.name, **spec.definition})
        else:
            raise ValueError(f"unknown benchmark {spec.name!r}; known: {', '.join(sorted(known))} "
                             "(or define it: `definition: {format, files, ...}`)")
        if spec.path:
            location = Path(spec.path)
        elif data_root:
            location = Path(data_root) / config.default_dir
        else:
            raise ValueError(f"--benchmark {spec.name}: give its folder as {spec.name}=PATH, or --data-root (data_root)")
        resolved.append((config, location))
    return resolved


def loader_options(config: BenchmarkConfig, location: str | Path, media_dir: str | Path) -> dict[str, Any]:
    """The loader options of a benchmark at ``location`` (its root folder or a single file), with
    ``{root}`` and ``{media}`` filled in; a lone file drops an ``images_dir`` that is not there
    (its image names stay relative to it)."""
    location = Path(location)
    root = location.parent if location.is_file() else location
    options = {k: v.replace("{root}", str(root)).replace("{media}", str(media_dir)) if isinstance(v, str) else v
               for k, v in config.loader_options.items()}
    if "images_dir" in options and location.is_file() and not Path(options["images_dir"]).exists():
        options.pop("images_dir")
    return options


def benchmark_files(config: BenchmarkConfig, location: str | Path) -> list[Path]:
    """The files of a benchmark release (one file, or its ``files`` under the root folder)."""
    location = Path(location)
    return [location] if location.is_file() else [location / f for f in config.files]


def release_files(config: BenchmarkConfig, location: str | Path) -> list[str]:
    """Everything a benchmark reads from its release: its files and the folders its options name
    under ``{root}`` (for fingerprints and the leakage check)."""
    location = Path(location)
    options = loader_options(config, location, "")
    named = [v for k, v in options.items() if isinstance(v, str) and "{root}" in str(config.loader_options.get(k))]
    return [str(p) for p in benchmark_files(config, location)] + [v for v in named if Path(v).exists()]


def load_benchmark(config: BenchmarkConfig, location: str | Path, media_dir: str | Path,
                   allow_outside_media: bool = False) -> LoadResult:
    """The benchmark's questions from ``location`` (its root folder, or a single file).

    Raises ``FileNotFoundError`` naming the expected file when the release is not where it should be.
    """
    location = Path(location)
    paths = benchmark_files(config, location)
    options = loader_options(config, location, media_dir)
    result = LoadResult()
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"{config.name}: {path} not found (expected the public release "
                                    f"layout: {', '.join(config.files)} under the benchmark folder)")
        result.extend(load_bank(path, config.format, media_roots=[str(location), str(media_dir)],
                                allow_outside_media=allow_outside_media, **options))
    if config.num_options is not None:
        kept = []
        for question in result.questions:
            if len(question.options) == config.num_options:
                kept.append(question)
            else:
                result.rejected.append(Rejected(question.metadata.get("source_file", str(location)), question.id,
                                                f"{len(question.options)} options, {config.name} has "
                                                f"{config.num_options}", question.id))
        result.questions = kept
    return result


def split_value(question: Question, field_path: str) -> str:
    """The value of a split field for a question, as text (``unknown`` when absent)."""
    if field_path.startswith("metadata."):
        value = question.metadata.get(field_path.split(".", 1)[1])
    else:
        value = getattr(question, field_path, None)
    return "unknown" if value is None or value == "" else str(value)
