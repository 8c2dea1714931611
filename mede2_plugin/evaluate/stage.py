"""Evaluation from its config, for ``mede2 eval`` and ``mede2 run`` alike.

:func:`evaluate` runs one model (an :class:`~mede2_plugin.evaluate.config.EvalConfig`) on all its
benchmarks: the model loads once for all of them (``SharedBackend``), a GPU engine runs in a
child process, a local model is seeded before each benchmark. :data:`STEPS` declares the
evaluation of several models and the side-by-side report for ``mede2 run``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mede2_plugin.core.prompts import prompt_overrides
from mede2_plugin.core.stage import (
    PlannedCalls,
    Projected,
    StageInputs,
    StagePlan,
    StageResult,
    Step,
    fingerprint_settings,
    role_entry,
)
from mede2_plugin.engines.jobs import maybe_isolated, seed_everything
from mede2_plugin.evaluate.benchmarks import (
    BenchmarkConfig,
    load_benchmark_configs,
    release_files,
    resolve_benchmarks,
)
from mede2_plugin.evaluate.config import EvalConfig, ReportConfig

PAPER_TEMPLATES = ["prompts/system.j2", "prompts/question.j2"]


def benchmarks_of(config: EvalConfig) -> list[tuple[BenchmarkConfig, Path]]:
    """The benchmarks of ``config`` and where their releases are."""
    known = None
    if config.definitions:
        from mede2_plugin.evaluate.benchmarks import BENCHMARKS

        known = {**BENCHMARKS, **load_benchmark_configs(config.definitions)}
    if not config.benchmarks:
        raise ValueError("give at least one benchmark (--benchmark NAME=PATH; see --list)")
    return resolve_benchmarks(config.benchmarks, config.data_root, known)


def _model(config: EvalConfig) -> Any:
    if config.model is None:
        raise ValueError("model: give the evaluated model (--model, --backend)")
    return config.model


def _evaluate_job(config: EvalConfig) -> list[tuple[dict[str, Any], dict[str, Any] | None, str]]:
    """Every benchmark of one model in this process (a child one for GPU engines)."""
    from mede2_plugin.client import SharedBackend
    from mede2_plugin.evaluate.runner import evaluate_benchmark

    model = _model(config)
    results = []
    with prompt_overrides(config.prompts), SharedBackend(model) as engine:  # weights load once
        for benchmark, location in benchmarks_of(config):
            if model.backend == "local":
                seed_everything(config.seed or 0)
            run = evaluate_benchmark(benchmark, location, model, config.out, config.settings(), label=config.label,
                                     generate=not config.rescore, engine=engine,
                                     allow_outside_media=config.allow_outside_media)
            results.append((run.metrics, run.batch.to_dict() if run.batch is not None else None, str(run.folder)))
    return results


def evaluate(config: EvalConfig) -> list[tuple[dict[str, Any], dict[str, Any] | None, str]]:
    """``(metrics, batch summary, folder)`` of every benchmark of one model (resumable)."""
    return maybe_isolated(_model(config), _evaluate_job, config)


def can_plot() -> bool:
    """Plots need matplotlib (``pip install 'mede2-plugin[plot]'``); without it the numbers still come."""
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


# -- the steps of `mede2 run`: several models, then the report ------------------------------------

def evaluate_inputs(configs: list[EvalConfig]) -> StageInputs:
    inputs = StageInputs(templates=list(PAPER_TEMPLATES))
    for config in configs:
        model = _model(config)
        if Path(model.model).exists():
            inputs.files.append(model.model)
        else:
            inputs.values[config.label or model.model] = model.model
        inputs.prompts.update(config.prompts)
        inputs.settings[config.label or model.model] = fingerprint_settings(config)
    for benchmark, location in benchmarks_of(configs[0]) if configs else []:
        inputs.files += release_files(benchmark, location)
    return inputs


def evaluate_models(configs: list[EvalConfig]) -> list[dict[str, Any]]:
    return [role_entry(f"eval ({c.label})", _model(c), n=c.samples, temperature=c.temperature, top_p=c.top_p,
                       max_tokens=c.max_tokens, seed=c.seed) for c in configs]


def evaluate_step(configs: list[EvalConfig], echo: Callable[[str], None] = print) -> StageResult:
    result = StageResult()
    complete = True
    for config in configs:
        echo(f"  {config.label}: {config.samples} sample(s) per question, T={config.temperature} "
             f"({_model(config).backend} backend)")
        for metrics, batch, folder in evaluate(config):
            result.calls += [batch] if batch else []
            complete = complete and bool(metrics.get("complete", True))
            result.counts.setdefault(config.label, {})[metrics["benchmark"]] = {
                k: metrics.get(k) for k in ("accuracy", "majority_vote", "questions", "answered", "unparseable",
                                            "samples", "complete")}
            result.outputs += [Path(folder) / "metrics.json", Path(folder) / "generations.jsonl"]
            accuracy = metrics.get("accuracy")
            echo(f"    {metrics.get('title', metrics['benchmark'])}: accuracy "
                 f"{'-' if accuracy is None else f'{100 * accuracy:.1f}%'}")
    result.complete = complete
    return result


def report(config: ReportConfig) -> dict[str, Path]:
    """The side-by-side table (Markdown, CSV) and scaling plot of the runs; the files written."""
    from mede2_plugin.evaluate.report import collect_metrics, write_report

    metrics = collect_metrics(config.runs)
    if config.models:
        missing = [m for m in config.models if m not in metrics]
        if missing:
            raise ValueError(f"no results for {', '.join(missing)}; found {', '.join(metrics)}")
        metrics = {m: metrics[m] for m in config.models}
    return write_report(metrics, config.out, base=config.base, splits=config.splits, plot=config.plot and can_plot())


def report_inputs(config: ReportConfig) -> StageInputs:
    files = [str(p) for run in config.runs for p in sorted(Path(run).glob("*/metrics.json"))]
    return StageInputs(files=files, settings={"models": config.models, "splits": config.splits})


def report_step(config: ReportConfig, echo: Callable[[str], None] = print) -> StageResult:
    runs = [run for run in config.runs if Path(run).is_dir()]
    if not runs:
        raise FileNotFoundError(f"{', '.join(config.runs)}: no evaluation results to report")
    written = report(ReportConfig(runs=runs, base=config.base, models=config.models, splits=config.splits,
                                  out=config.out, plot=config.plot))
    message = f"report: {written['markdown']}"
    if not can_plot():
        message += " (no scaling plot: install matplotlib, pip install 'mede2-plugin[plot]')"
    return StageResult(outputs=list(written.values()), counts={"files": {k: str(v) for k, v in written.items()}},
                       message=message)


def evaluate_plan(configs: list[EvalConfig], projected: Projected) -> StagePlan:
    """One request per benchmark question and model, ``samples`` samples each (each benchmark
    loaded once, its extracted images in a temporary folder)."""
    import tempfile

    from mede2_plugin.evaluate.benchmarks import load_benchmark
    from mede2_plugin.evaluate.runner import build_requests

    plan, loaded = StagePlan(), {}
    with tempfile.TemporaryDirectory(prefix="mede2-plan-") as media:
        for config in configs:
            with prompt_overrides(config.prompts):
                for benchmark, location in benchmarks_of(config):
                    if benchmark.name not in loaded:
                        questions = load_benchmark(benchmark, location, Path(media) / benchmark.name,
                                                   config.allow_outside_media).questions
                        loaded[benchmark.name] = questions[: config.limit] if config.limit else questions
                    output = Path(config.out) / (config.label or "") / benchmark.name / "generations.jsonl"
                    plan.calls.append(PlannedCalls(f"eval ({config.label}) {benchmark.name}", _model(config), output,
                                                   build_requests(loaded[benchmark.name], config.settings()),
                                                   basis="one per benchmark question"))
    return plan


STEPS = [
    Step("evaluate", "evaluation of M0, M1, M2 with inference-time scaling", evaluate_step, evaluate_inputs,
         lambda configs: [Path(configs[0].out)] if configs else [], evaluate_models, evaluate_plan),
    Step("report", "report: the M0/M1/M2 table and the scaling plot", report_step, report_inputs,
         lambda config: [Path(config.out).parent]),
]
