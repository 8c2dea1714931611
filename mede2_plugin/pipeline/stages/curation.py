"""Curation and Stage-I data: the ``curate`` and ``distill`` stages."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mede2_plugin.client.config import BackendConfig
from mede2_plugin.curate.common import BankSource, slug
from mede2_plugin.pipeline.stages.base import (
    PAPER_TEMPLATES,
    STAGE1_DATASET,
    Context,
    StageResult,
    benchmark_configs,
    benchmark_files,
    call_dicts,
    declared,
    role_entry,
    simulation_inputs,
    templates_in,
    with_inputs,
)
from mede2_plugin.pipeline.state import StageInputs
from mede2_plugin.settings import to_plain


def leakage_sources(ctx: Context) -> list[dict[str, Any]]:
    """The benchmark files as ``BankSource`` mappings for the curation leakage check."""
    sources = []
    media = ctx.layout.curate / "leakage_media"
    for (config, location), spec in zip(benchmark_configs(ctx), ctx.config.benchmarks):
        if not spec.leakage:
            continue
        root = Path(location)
        files = [root] if root.is_file() else [root / f for f in config.files]
        options = {k: (v.replace("{root}", str(root.parent if root.is_file() else root)).replace("{media}", str(media))
                       if isinstance(v, str) else v) for k, v in config.loader_options.items()}
        if root.is_file() and "images_dir" in options and not Path(options["images_dir"]).exists():
            options.pop("images_dir")
        for path in files:
            sources.append({"path": str(path), "format": config.format, "options": options,
                            "name": f"{config.name}:{path.name}"})
    return sources


def curate_settings(ctx: Context, bank: BankSource, runtime: bool) -> dict[str, Any]:
    """The ``CurateConfig`` mapping of one bank: the ``curate:`` section plus roles and paths."""
    roles = ctx.config.roles
    pick: Callable[[str, BackendConfig | None], Any] = (
        (lambda name, b: to_plain(ctx.role(name)) if ctx.role(name) is not None else None) if runtime
        else (lambda name, b: declared(b)))
    data = copy.deepcopy(ctx.config.curate)
    data["bank"] = {"path": bank.path, "format": bank.format, "options": dict(bank.options), "name": bank.name}
    data["output_dir"] = str(ctx.layout.curate / slug(bank.label))
    difficulty = data.setdefault("difficulty", {})
    if roles.baseline_solver is not None:
        difficulty["baseline"] = {**(difficulty.get("baseline") or {}),
                                  "backend": pick("baseline_solver", roles.baseline_solver)}
    if roles.strong_solvers:
        given = difficulty.get("strong") or [{"samples": 4, "temperature": 0.7}]
        difficulty["strong"] = [{**copy.deepcopy(given[min(i, len(given) - 1)]),
                                 "backend": pick(f"strong_solver[{i}]", backend)}
                                for i, backend in enumerate(roles.strong_solvers)]
    if roles.classifier is not None:
        data.setdefault("classify", {})["classifier"] = pick("classifier", roles.classifier)
    if roles.rewriter is not None:
        data.setdefault("strip", {})["rewriter"] = pick("rewriter", roles.rewriter)
    leakage = data.setdefault("leakage", {})
    leakage["benchmarks"] = list(leakage.get("benchmarks") or []) + leakage_sources(ctx)
    return data


def _bank_files(bank: BankSource) -> list[str]:
    files = [bank.path]
    files += [v for k, v in bank.options.items() if isinstance(v, str) and k.endswith(("_dir", "_file", "_path"))]
    return files


def curate_inputs(ctx: Context) -> StageInputs:
    from mede2_plugin.curate.config import load_curate_config

    settings = {}
    templates = ["prompts/system.j2"]
    files: list[str] = []
    for bank in ctx.config.banks:
        data = curate_settings(ctx, bank, runtime=False)
        plain = to_plain(load_curate_config(data))
        settings[bank.label] = plain
        templates += templates_in(plain)
        files += _bank_files(bank)
    for config, location in benchmark_configs(ctx):
        files += benchmark_files(config, location)
    roles = ["baseline_solver", "classifier", "rewriter"] + [f"strong_solver[{i}]" for i in
                                                              range(len(ctx.config.roles.strong_solvers))]
    return with_inputs(StageInputs(files=files, settings=settings, templates=templates), simulation_inputs(ctx, roles))


def curate_models(ctx: Context) -> list[dict[str, Any]]:
    from mede2_plugin.curate.config import load_curate_config

    if not ctx.config.banks:
        return []
    config = load_curate_config(curate_settings(ctx, ctx.config.banks[0], runtime=True))
    entries = []
    if config.difficulty.baseline is not None:
        b = config.difficulty.baseline
        entries.append(role_entry("baseline_solver", b.backend, n=b.samples, temperature=b.temperature,
                                   max_tokens=b.max_tokens))
    for i, s in enumerate(config.difficulty.strong):
        entries.append(role_entry(f"strong_solver[{i}]", s.backend, n=s.samples, temperature=s.temperature,
                                   max_tokens=s.max_tokens))
    c = config.classify
    entries.append(role_entry("classifier", c.classifier, n=c.samples, temperature=c.temperature, max_tokens=c.max_tokens))
    r = config.strip
    entries.append(role_entry("rewriter", r.rewriter, n=1, temperature=r.temperature, max_tokens=r.max_tokens))
    return [e for e in entries if e]


def curate_run(ctx: Context, decision: str) -> StageResult:
    from mede2_plugin.curate.config import load_curate_config
    from mede2_plugin.curate.pipeline import run_all
    from mede2_plugin.data import read_bank, write_bank

    result = StageResult()
    text, images = [], []
    pending = 0
    for bank in ctx.config.banks:
        config = load_curate_config(curate_settings(ctx, bank, runtime=True))
        ctx.echo(f"  bank {bank.label} ({bank.format}): steps {', '.join(config.steps)}")
        reports = run_all(config)
        for report in reports:
            result.calls += call_dicts(report.calls)
            pending += report.pending
            reasons = ", ".join(f"{k} {v}" for k, v in report.dropped.items()) or "none dropped"
            ctx.echo(f"    {report.step:<10} {report.input:>4} in, {report.kept:>4} kept   ({reasons})")
        result.counts[bank.label] = {r.step: {"in": r.input, "kept": r.kept, "dropped": r.dropped,
                                              "pending": r.pending} for r in reports}
        text += read_bank(config.out / "curated_text.jsonl")
        images += read_bank(config.out / "curated_image.jsonl")
        result.outputs += [config.out / "curated.jsonl", config.out / "report.json"]
    result.counts["stage1_questions"] = write_bank(ctx.layout.stage1_questions, text)
    result.counts["stage2_questions"] = write_bank(ctx.layout.stage2_questions, images)
    result.outputs += [ctx.layout.stage1_questions, ctx.layout.stage2_questions]
    result.counts["pending"] = pending
    result.complete = pending == 0
    result.message = (f"{len(text)} text questions for Stage-I, {len(images)} image questions for Stage-II"
                      + (f"; {pending} pending (failed calls): rerun to retry" if pending else ""))
    return result


def distill_settings(ctx: Context, runtime: bool) -> dict[str, Any]:
    roles = ctx.config.roles
    data = copy.deepcopy(ctx.config.distill)
    data["questions"] = {"path": str(ctx.layout.stage1_questions), "format": "bank"}
    data["output_dir"] = str(ctx.layout.distill)
    data.setdefault("build", {})["dataset_dir"] = str(ctx.layout.stage1_data)
    data["build"].setdefault("dataset_name", STAGE1_DATASET)
    if roles.teachers:
        given = {t.get("name"): t for t in data.get("teachers") or [] if isinstance(t, dict)}
        data["teachers"] = [{**copy.deepcopy(given.get(name, {})), "name": name,
                             "backend": to_plain(ctx.role(f"teacher[{name}]")) if runtime else declared(backend)}
                            for name, backend in roles.teachers.items()]
    if roles.trace_judge is not None:
        data.setdefault("filter", {})["judge"] = (to_plain(ctx.role("trace_judge")) if runtime
                                                  else declared(roles.trace_judge))
    return data


def distill_inputs(ctx: Context) -> StageInputs:
    from mede2_plugin.distill import load_distill_config

    plain = to_plain(load_distill_config(distill_settings(ctx, runtime=False)))
    roles = ["trace_judge"] + [f"teacher[{name}]" for name in ctx.config.roles.teachers]
    return with_inputs(StageInputs(files=[str(ctx.layout.stage1_questions)], settings=plain,
                             templates=templates_in(plain) + PAPER_TEMPLATES), simulation_inputs(ctx, roles))


def distill_models(ctx: Context) -> list[dict[str, Any]]:
    from mede2_plugin.distill import load_distill_config

    config = load_distill_config(distill_settings(ctx, runtime=True))
    entries = [role_entry(f"teacher[{t.name}]", t.backend, n=t.samples, temperature=t.temperature,
                           top_p=t.top_p, max_tokens=t.max_tokens, reasoning=t.reasoning,
                           expand_summary=t.expand_summary) for t in config.teachers]
    f = config.filter
    entries.append(role_entry("trace_judge", f.judge, n=1, temperature=f.judge_temperature, max_tokens=f.judge_max_tokens))
    return [e for e in entries if e]


def distill_run(ctx: Context, decision: str) -> StageResult:
    from mede2_plugin.distill import load_distill_config, run_all

    config = load_distill_config(distill_settings(ctx, runtime=True))
    ctx.echo(f"  teachers: {', '.join(t.name for t in config.teachers)}")
    reports = run_all(config)
    result = StageResult(outputs=[ctx.layout.stage1_data, config.out / "report.json"])
    pending = 0
    for report in reports:
        result.calls += call_dicts(report.calls)
        pending += report.pending
        reasons = ", ".join(f"{k} {v}" for k, v in report.dropped.items()) or "none dropped"
        ctx.echo(f"    {report.step:<10} {report.input:>4} in, {report.kept:>4} kept   ({reasons})")
        result.counts[report.step] = {"in": report.input, "kept": report.kept, "dropped": report.dropped,
                                      "pending": report.pending, **{k: v for k, v in report.extra.items()
                                                                    if isinstance(v, (int, float, str))}}
    samples = int(reports[-1].extra.get("samples") or 0)
    result.counts["samples"] = samples
    result.complete = pending == 0 and samples > 0
    result.message = f"{samples} Stage-I training samples in {ctx.layout.stage1_data}"
    if pending:
        result.message += f"; {pending} pending (failed calls): rerun to retry"
    elif not samples:
        result.message = "no Stage-I training sample passed the filter: nothing to train on"
    return result
