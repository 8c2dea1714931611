"""Evaluation (paper section 4): benchmarks, scoring, inference-time scaling, reports, agreement.

    from mede2_plugin.evaluate import BENCHMARKS, EvalSettings, evaluate_benchmark
    run = evaluate_benchmark(BENCHMARKS["medxpertqa_mm"], "data/MedXpertQA", backend_config, "eval",
                             EvalSettings(samples=32))
    run.metrics["accuracy"], run.metrics["splits"], run.metrics["scaling"]

Commands: ``mede2 eval``, ``mede2 report``, ``mede2 agreement`` (see :mod:`.cli`).
"""

from mede2_plugin.evaluate.agreement import (
                                              Agreement,
                                              agreement,
                                              read_scores,
                                              write_agreement,
)
from mede2_plugin.evaluate.benchmarks import (
                                              BENCHMARKS,
                                              BenchmarkConfig,
                                              load_benchmark,
                                              load_benchmark_configs,
                                              split_value,
)
from mede2_plugin.evaluate.report import collect_metrics, markdown_table, write_report
from mede2_plugin.evaluate.runner import (
                                              BenchmarkRun,
                                              EvalSettings,
                                              build_requests,
                                              evaluate_benchmark,
                                              score_folder,
)
from mede2_plugin.evaluate.scaling import (
                                              majority_at_n,
                                              pass_at_n,
                                              sample_sizes,
                                              scaling_curve,
)
from mede2_plugin.evaluate.scoring import (
                                              QuestionScore,
                                              accuracy_table,
                                              score_question,
                                              summarise,
)

__all__ = [
                                              "BENCHMARKS",
                                              "Agreement",
                                              "BenchmarkConfig",
                                              "BenchmarkRun",
                                              "EvalSettings",
                                              "QuestionScore",
                                              "accuracy_table",
                                              "agreement",
                                              "build_requests",
                                              "collect_metrics",
                                              "evaluate_benchmark",
                                              "load_benchmark",
                                              "load_benchmark_configs",
                                              "majority_at_n",
                                              "markdown_table",
                                              "pass_at_n",
                                              "read_scores",
                                              "sample_sizes",
                                              "scaling_curve",
                                              "score_folder",
                                              "score_question",
                                              "split_value",
                                              "summarise",
                                              "write_agreement",
                                              "write_report",
]
