"""Settings of ``mede2 eval`` and ``mede2 report``: documented dataclasses, loadable from YAML.

Example ``eval.yaml`` (the sampling settings are those of :class:`~mede2_plugin.evaluate.runner.EvalSettings`)::

    benchmarks:
      - {name: medxpertqa_mm, path: data/MedXpertQA}
      - {name: mmmu_health}              # under data_root/MMMU
    data_root: data
    model: {backend: vllm, model: saves/m2, engine_args: {image_max_pixels: 262144}}
    samples: 32                           # pass@n / majority-vote@n curves
    out: eval

Load with :func:`load_eval_config` (file or its ``eval:`` section, then ``key.path=value``
overrides); ``mede2 eval -c eval.yaml`` does, and its flags set key paths.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mede2_plugin.client.config import BackendConfig
from mede2_plugin.core.settings import load_config
from mede2_plugin.evaluate.benchmarks import BenchmarkSpec
from mede2_plugin.evaluate.runner import EvalSettings


@dataclass
class EvalConfig(EvalSettings):
    """One model on the paper's benchmarks, with inference-time scaling (``mede2 eval``).

    Besides the sampling settings of :class:`~mede2_plugin.evaluate.runner.EvalSettings`
    (``samples``, ``temperature``, ``top_p``, ``max_tokens``, ``seed``, ``limit``, ``plot``):

    Attributes:
        benchmarks: the benchmarks and where their releases are.
        data_root: folder holding the releases under their default names (for benchmarks given without a path).
        definitions: a YAML file of further benchmark definitions (a list of ``BenchmarkConfig`` fields).
        out: evaluation root; results in ``<out>/<label>/<benchmark>``.
        label: the model's name in reports (default: the model folder's name).
        model: the evaluated model and where it runs.
        rescore: no generation: score the generations already there again.
        allow_outside_media: allow benchmark images outside the benchmark and media folders.
        prompts: prompt templates replaced by your own jinja files, ``{NAME: PATH}`` (e.g. ``question``).
    """

    benchmarks: list[BenchmarkSpec] = field(default_factory=list)
    data_root: str | None = None
    definitions: str | None = None
    out: str = "eval"
    label: str | None = None
    model: BackendConfig | None = None
    rescore: bool = False
    allow_outside_media: bool = False
    prompts: dict[str, str] = field(default_factory=dict)

    def settings(self) -> EvalSettings:
        """The sampling settings alone (what must match for generations to be reused)."""
        from dataclasses import fields

        return EvalSettings(**{f.name: getattr(self, f.name) for f in fields(EvalSettings)})


@dataclass
class ReportConfig:
    """The side-by-side report of several models (``mede2 report``; the pipeline's ``report`` stage).

    Attributes:
        runs: evaluation roots (``out`` of ``mede2 eval``) or model folders ``<out>/<label>``.
        base: label of the base model the deltas are taken against (default: the first).
        models: only these model labels, in this order (default: all, as found).
        splits: add per-split columns (question type, task, ...).
        out: output prefix: ``PREFIX.md``, ``PREFIX.csv``, ``PREFIX_scaling.png``.
        plot: draw the scaling PNG (needs matplotlib).
    """

    runs: list[str] = field(default_factory=list)
    base: str | None = None
    models: list[str] | None = None
    splits: bool = False
    out: str = "report"
    plot: bool = True


def load_eval_config(source: str | Path | dict[str, Any] | None = None,
                     overrides: list[str] | tuple[str, ...] = ()) -> EvalConfig:
    """The evaluation settings: defaults, then ``source`` (YAML file or dict, or its ``eval:``
    section), then ``key.path=value`` overrides."""
    return load_config(EvalConfig, source, overrides, section="eval")
