"""Curation (paper 3.1, 3.3): from a question bank to the hard, reasoning-heavy questions.

    from mede2_plugin.curate import load_curate_config, run_all, run_step
    config = load_curate_config("curate.yaml", ["difficulty.strong.0.samples=4"])
    reports = run_all(config)          # load, leakage, difficulty, classify, strip
    print(format_table(reports))

Steps: :mod:`~mede2_plugin.curate.difficulty` (baseline / strong solvers, re-thresholdable),
:mod:`~mede2_plugin.curate.classify` (image-question type), :mod:`~mede2_plugin.curate.captions`
(caption stripping, checked), :mod:`~mede2_plugin.curate.leakage` (MinHash + exact Jaccard
against evaluation benchmarks). Settings: :mod:`~mede2_plugin.curate.config`.
"""

from mede2_plugin.core.steps import StepReport, format_table
from mede2_plugin.curate.config import (
                                        ClassifyConfig,
                                        CurateConfig,
                                        DifficultyConfig,
                                        LeakageConfig,
                                        SolverConfig,
                                        StripConfig,
                                        load_curate_config,
)
from mede2_plugin.curate.pipeline import rethreshold, run_all, run_step
from mede2_plugin.data.source import BankSource

__all__ = ["BankSource", "ClassifyConfig", "CurateConfig", "DifficultyConfig", "LeakageConfig", "SolverConfig",
           "StepReport", "StripConfig", "format_table", "load_curate_config", "rethreshold", "run_all",
           "run_step"]
