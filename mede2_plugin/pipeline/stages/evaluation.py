"""The ``evaluate`` (M0, M1, M2) and ``report`` stages."""

from __future__ import annotations

import dataclasses
from typing import Any

from mede2_plugin.client.config import BackendConfig
from mede2_plugin.pipeline.config import model_backend
from mede2_plugin.pipeline.stages.base import (
    PAPER_TEMPLATES,
    Context,
    StageError,
    StageResult,
    benchmark_configs,
    benchmark_files,
    call_dicts,
    role_entry,
    seed_everything,
)
from mede2_plugin.pipeline.state import StageInputs


def can_plot() -> bool:
    """Plots need matplotlib (``pip install 'mede2-plugin[plot]'``); without it the numbers still come."""
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def eval_settings(ctx: Context):
    from mede2_plugin.evaluate.runner import EvalSettings

    e = ctx.config.evaluate
    return EvalSettings(samples=e.samples, temperature=e.temperature, top_p=e.top_p, max_tokens=e.max_tokens,
                        seed=ctx.config.seed, limit=e.limit, plot=can_plot())


def evaluate_inputs(ctx: Context) -> StageInputs:
    files: list[str] = []
    values: dict[str, Any] = {}
    for label in ctx.config.evaluate.models:
        model_files, model_values = ctx.model_inputs(label)
        files += model_files
        values.update(model_values)
    benchmarks = []
    for config, location in benchmark_configs(ctx):
        files += benchmark_files(config, location)
        benchmarks.append(config.to_dict())
    settings = {"evaluate": dataclasses.asdict(ctx.config.evaluate), "generation": eval_settings(ctx).generation_key(),
                "backend": ctx.config.roles.eval, "benchmarks": benchmarks, "template": ctx.config.models.template,
                "cpu_threads": ctx.config.cpu_threads}
    return StageInputs(files=files, settings=settings, templates=PAPER_TEMPLATES, values=values)


def evaluate_models(ctx: Context) -> list[dict[str, Any]]:
    settings = eval_settings(ctx)
    entries = []
    for label in ctx.config.evaluate.models:
        backend = model_backend(ctx.config.roles.eval, ctx.model_path(label), "eval")
        entries.append(role_entry(f"eval ({label})", backend, n=settings.samples, temperature=settings.temperature,
                                   top_p=settings.top_p, max_tokens=settings.max_tokens, seed=settings.seed))
    return entries


def _evaluate_job(benchmarks: list[tuple[Any, str]], backend: BackendConfig, out: str, settings: Any,
                  label: str, seed: int, threads: int | None) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    from mede2_plugin.client import SharedBackend
    from mede2_plugin.evaluate.runner import evaluate_benchmark

    results = []
    with SharedBackend(backend) as engine:  # one model load for all benchmarks of this model
        for config, location in benchmarks:
            if backend.backend == "local":
                seed_everything(seed, threads)
            run = evaluate_benchmark(config, location, backend, out, settings, label=label, engine=engine)
            results.append((run.metrics, run.batch.to_dict() if run.batch is not None else None))
    return results


def evaluate_run(ctx: Context, decision: str) -> StageResult:
    from mede2_plugin.pipeline.isolation import maybe_isolated

    if not ctx.config.benchmarks:
        raise StageError("benchmarks: nothing to evaluate on")
    settings = eval_settings(ctx)
    benchmarks = benchmark_configs(ctx)
    result = StageResult()
    complete = True
    for label in ctx.config.evaluate.models:
        backend = ctx.model_role("eval", label)
        ctx.echo(f"  {label}: {settings.samples} sample(s) per question, T={settings.temperature} "
                 f"({backend.backend} backend)")
        for metrics, batch in maybe_isolated(backend, _evaluate_job, benchmarks, backend, str(ctx.layout.eval),
                                             settings, label, ctx.config.seed, ctx.config.cpu_threads):
            result.calls += call_dicts([batch])
            complete = complete and bool(metrics.get("complete", True))
            result.counts.setdefault(label, {})[metrics["benchmark"]] = {
                k: metrics.get(k) for k in ("accuracy", "majority_vote", "questions", "answered", "unparseable",
                                            "samples", "complete")}
            folder = ctx.layout.eval / label / metrics["benchmark"]
            result.outputs += [folder / "metrics.json", folder / "generations.jsonl"]
            accuracy = metrics.get("accuracy")
            ctx.echo(f"    {metrics.get('title', metrics['benchmark'])}: accuracy "
                     f"{'-' if accuracy is None else f'{100 * accuracy:.1f}%'}")
    result.complete = complete
    return result


def report_inputs(ctx: Context) -> StageInputs:
    files = [str(p) for label in ctx.config.evaluate.models
             for p in sorted((ctx.layout.eval / label).glob("*/metrics.json"))]
    return StageInputs(files=files, settings={"models": ctx.config.evaluate.models, "splits": ctx.config.evaluate.splits})


def report_run(ctx: Context, decision: str) -> StageResult:
    from mede2_plugin.evaluate.report import collect_metrics, write_report

    folders = [ctx.layout.eval / label for label in ctx.config.evaluate.models if (ctx.layout.eval / label).is_dir()]
    if not folders:
        raise StageError(f"{ctx.layout.eval}: no evaluation results to report")
    metrics = collect_metrics(folders)
    base = ctx.config.evaluate.models[0]
    written = write_report(metrics, ctx.layout.report_prefix, base=base, splits=ctx.config.evaluate.splits,
                           plot=can_plot())
    message = f"report: {written['markdown']}"
    if not can_plot():
        message += " (no scaling plot: install matplotlib, pip install 'mede2-plugin[plot]')"
    return StageResult(outputs=list(written.values()), counts={"files": {k: str(v) for k, v in written.items()}},
                       message=message)
