"""Stage-I data (paper 3.2): teacher reasoning traces, the trace filter, the SFT dataset.

    from mede2_plugin.distill import load_distill_config, run_all
    config = load_distill_config("distill.yaml")
    reports = run_all(config)     # generate -> filter -> build
    # config.dataset_dir / "dataset_info.json" now has the `mede2_stage1` entry

Modules: :mod:`~mede2_plugin.distill.traces` (reasoning from ``reasoning_content`` / think tags /
summary), :mod:`~mede2_plugin.distill.generate` (teachers, summary expansion),
:mod:`~mede2_plugin.distill.filter` (rules + coherence judge), :mod:`~mede2_plugin.distill.build`
(selection rule, ``mede2_sft`` and Appendix-A messages files, ``dataset_info.json``).
"""

from mede2_plugin.distill.config import (
                                         BuildConfig,
                                         DistillConfig,
                                         SelectConfig,
                                         TeacherConfig,
                                         TraceFilterConfig,
                                         default_teachers,
                                         load_distill_config,
)
from mede2_plugin.distill.pipeline import run_all, run_step

__all__ = ["BuildConfig", "DistillConfig", "SelectConfig", "TeacherConfig", "TraceFilterConfig", "default_teachers",
           "load_distill_config", "run_all", "run_step"]
