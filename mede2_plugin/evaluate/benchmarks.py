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

from mede2_plugin.data import HEALTH_SUBJECTS, LoadResult, Rejected, load_bank
from mede2_plugin.questions import Question


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


def _substitute(value: Any, root: Path, media: Path) -> Any:
    if isinstance(value, str):
        return value.replace("{root}", str(root)).replace("{media}", str(media))
    return value


def load_benchmark(config: BenchmarkConfig, location: str | Path, media_dir: str | Path) -> LoadResult:
    """The benchmark's questions from ``location`` (its root folder, or a single file).

    Raises ``FileNotFoundError`` naming the expected file when the release is not where it should be.
    """
    location = Path(location)
    media = Path(media_dir)
    if location.is_file():
        root, paths = location.parent, [location]
    else:
        root, paths = location, [location / f for f in config.files]
    options = {k: _substitute(v, root, media) for k, v in config.loader_options.items()}
    if "images_dir" in options and location.is_file() and not Path(options["images_dir"]).exists():
        options.pop("images_dir")  # a lone file: image names stay relative to it
    result = LoadResult()
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"{config.name}: {path} not found (expected the public release "
                                    f"layout: {', '.join(config.files)} under the benchmark folder)")
        result.extend(load_bank(path, config.format, **options))
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
