"""``mede2 run``: the stages in order, each skipped when up to date, resumed when interrupted.

    curate -> distill -> train_stage1 -> rollout -> judge -> pairs -> train_stage2 -> evaluate -> report

For each selected stage (``--from`` / ``--until``) the runner computes the stage fingerprint
(:mod:`mede2_plugin.pipeline.state`), then skips, resumes or redoes it, and records everything in
the manifest (:mod:`mede2_plugin.pipeline.manifest`). A stage that leaves items pending (failed
calls) stops the run with exit status 1 (``on_incomplete: continue`` goes on); a rerun retries
them. Stages before ``--from`` are not run, but must have completed. A ``prepare`` step (the tiny
base model of the demo) always comes first. One run at a time writes an output folder: a second
``mede2 run`` on it is refused at once, naming the first, or waits for it with ``--wait``.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mede2_plugin.core.locks import WriterLock
from mede2_plugin.core.redact import Redactor
from mede2_plugin.core.settings import to_plain
from mede2_plugin.core.stage import StageResult
from mede2_plugin.pipeline.config import SIMULATED, PipelineConfig
from mede2_plugin.pipeline.manifest import Manifest
from mede2_plugin.pipeline.state import (
    COMPLETE,
    FAILED,
    FRESH,
    INCOMPLETE,
    RESUME,
    SKIP,
    ContentHasher,
    StageStore,
    describe,
    fingerprint,
    json_hash,
)
from mede2_plugin.pipeline.steps import (
    PREPARE,
    STAGE_NAMES,
    STEPS,
    Context,
    Layout,
    PipelineStep,
    apply_cpu_threads,
)

EXIT_OK, EXIT_INCOMPLETE, EXIT_ERROR = 0, 1, 2


def select_stages(start: str | None, until: str | None) -> list[PipelineStep]:
    """The stages from ``start`` to ``until`` (inclusive), in pipeline order."""
    for name in (start, until):
        if name is not None and name not in STAGE_NAMES:
            raise ValueError(f"unknown stage {name!r}; stages: {', '.join(STAGE_NAMES)}")
    first = STAGE_NAMES.index(start) if start else 0
    last = STAGE_NAMES.index(until) if until else len(STEPS) - 1
    if first > last:
        raise ValueError(f"--from {start} comes after --until {until}")
    return STEPS[first:last + 1]


def _relative(value: Any, out: str) -> Any:
    """Paths inside the output folder written as ``$OUT/...`` (a moved run keeps its fingerprints)."""
    if isinstance(value, dict):
        return {_relative(k, out): _relative(v, out) for k, v in value.items()}
    if isinstance(value, list):
        return [_relative(v, out) for v in value]
    if isinstance(value, str) and out in value:
        return value.replace(out, "$OUT")
    return value


def stage_fingerprint(context: Context, stage: PipelineStep) -> tuple[str, dict[str, Any]]:
    """The fingerprint of ``stage`` in this run, and the inputs it was computed from."""
    described = _relative(describe(stage.inputs(context), context.hasher), str(context.layout.out))
    described["settings_sha256"] = json_hash(described["settings"])
    return fingerprint(described), described


def describe_roles(config: PipelineConfig, simulated_url: str | None) -> list[str]:
    """One line per role saying plainly what plays it (simulated, local, or a provider)."""
    lines = []
    if simulated_url:
        lines.append(f"  {'(simulated server)':<22} {simulated_url}: a local fake OpenAI-compatible server with "
                     f"scripted replies; no model is asked")
    for name, backend in config.roles.api_roles():
        if backend.base_url == SIMULATED:
            where = f"SIMULATED ({backend.model})"
        else:
            where = f"{backend.backend} / {backend.model}" + (f" at {backend.base_url}" if backend.base_url else "")
        lines.append(f"  {name:<22} {where}")
    for name, label in (("rollout", "M1"), ("eval", "M0, M1, M2")):
        backend = getattr(config.roles, name)
        engine = {"local": "LLaMA-Factory HuggingFace engine in this process",
                  "vllm": "vLLM engine in a child process"}.get(backend.get("backend"), backend.get("backend"))
        lines.append(f"  {name + ' (' + label + ')':<22} {backend.get('backend')}: {engine}")
    if config.models.build_tiny:
        lines.append(f"  {'base model M0':<22} the tiny random Qwen2-VL (0.5M parameters) built offline")
    else:
        lines.append(f"  {'base model M0':<22} {config.models.base}")
    return lines


class Runner:
    """One ``mede2 run`` over one output folder.

    Args:
        config: the pipeline settings (:func:`~mede2_plugin.pipeline.config.load_pipeline_config`).
        config_file: the YAML it came from (for the manifest), or None.
        argv: the command line (for the manifest).
        echo: prints a line for the user.
    """

    def __init__(self, config: PipelineConfig, config_file: str | None = None, argv: Sequence[str] = (),
                 echo: Callable[[str], None] = print) -> None:
        self.config = config
        self.config_file = config_file
        self.argv = list(argv)
        self.echo = echo
        self.layout = Layout(config.out)
        self.layout.out.mkdir(parents=True, exist_ok=True)
        self.lock = WriterLock(self.layout.state / "run", what=f"the run folder {self.layout.out}")
        self.hasher = ContentHasher(self.layout.state / "hashes.json")
        self.store = StageStore(self.layout.out, self.hasher)
        key_names = [b.api_key_env for _, b in config.roles.api_roles() if b.api_key_env]
        self.manifest = Manifest(self.layout.manifest, Redactor(key_names))
        self.server = None

    # -- the run ----------------------------------------------------------------------------
    def run(self, start: str | None = None, until: str | None = None, force: Sequence[str] = ()) -> int:
        """Run the selected stages; return 0 (done), 1 (a stage left items pending) or 2 (error)."""
        selected = select_stages(start, until)
        unknown = [name for name in force if name not in STAGE_NAMES and name != "all"]
        if unknown:
            raise ValueError(f"--force: unknown stage(s) {unknown}; stages: {', '.join(STAGE_NAMES)}")
        forced = set(STAGE_NAMES) if "all" in force else set(force)
        plain = to_plain(self.config)
        self.manifest.begin_run(self.argv, self.config_file, plain, json_hash(plain),
                                {"from": start, "until": until, "force": sorted(forced)})
        status = "complete"
        try:
            for stage in STEPS[:STEPS.index(selected[0])]:
                state = self.store.load(stage.name)
                if state is None or state.get("status") != COMPLETE:
                    raise RuntimeError(f"stage {stage.name} has not completed in {self.layout.out}; "
                                       f"run it first (--from {stage.name})")
            context = self._context()
            self._check_api_keys(context, selected, forced)
            self.echo(f"MedE2 pipeline -> {self.layout.out}")
            self.echo("roles:")
            for line in describe_roles(self.config, self.server.base_url if self.server else None):
                self.echo(line)
            code = self._stage(context, PREPARE, 0, len(selected), forced)
            for stage in STEPS:
                if code != EXIT_OK:
                    break
                if stage not in selected:
                    if STEPS.index(stage) < STEPS.index(selected[0]):
                        self._check_done(context, stage)
                    continue
                code = self._stage(context, stage, selected.index(stage) + 1, len(selected), forced)
            status = {EXIT_OK: "complete", EXIT_INCOMPLETE: "incomplete"}.get(code, "failed")
            return code
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        except BaseException:
            status = "failed"
            raise
        finally:
            self.manifest.end_run(status)
            self.hasher.save()
            if self.server is not None:
                self.server.stop()
            self.lock.release()

    def _context(self) -> Context:
        simulated_url = self._start_simulated() if self.config.simulated_roles() else None
        if "local" in (self.config.roles.rollout.get("backend"), self.config.roles.eval.get("backend")):
            apply_cpu_threads(self.config.cpu_threads)
        return Context(self.config, self.layout, self.hasher, simulated_url, _quiet_llamafactory())

    def _check_api_keys(self, context: Context, selected: Sequence[PipelineStep], forced: set[str]) -> None:
        """Every API key that the selected, unfinished stages need is set, before any stage runs: a
        missing judge key must not surface only after curation and distillation were paid for."""
        missing = []
        for stage in selected:
            state = self.store.load(stage.name) or {}
            if state.get("status") == COMPLETE and stage.name not in forced:
                continue  # up to date or (inputs changed) checked again when it starts
            for entry in _safe_models(stage, context):
                variable = entry.get("api_key_env")
                if variable and not os.environ.get(variable):
                    missing.append(f"{stage.name} role {entry['role']} ({entry['model']}) needs {variable}")
        if missing:
            raise ValueError("API key(s) not set, nothing was run: " + "; ".join(missing)
                             + " (set them in the environment; keys are never read from files)")

    def _start_simulated(self) -> str:
        from mede2_plugin.demo.simulated import start_server

        questions = []
        for bank in self.config.banks:
            questions += bank.load().questions
        simulated = self.config.simulated
        assert simulated is not None
        log = self.layout.simulated_calls if simulated.call_log else None
        self.server = start_server(questions, simulated.script, log, simulated.latency, str(self.layout.out))
        return self.server.base_url

    def _fingerprint(self, context: Context, stage: PipelineStep) -> tuple[str, dict[str, Any]]:
        return stage_fingerprint(context, stage)

    def _check_done(self, context: Context, stage: PipelineStep) -> None:
        """Warn when a completed stage before ``--from`` is out of date (its inputs changed since)."""
        state = self.store.load(stage.name) or {}
        print_, _ = self._fingerprint(context, stage)
        if state.get("fingerprint") != print_:
            self.echo(f"warning: stage {stage.name} is out of date (its inputs changed) but not selected; "
                      f"using its existing outputs")

    def _stage(self, context: Context, stage: PipelineStep, number: int, total: int, forced: set[str]) -> int:
        label = f"[{number}/{total}] {stage.name}" if number else f"[-] {stage.name}"
        print_, described = self._fingerprint(context, stage)
        decision, previous = self.store.decide(stage.name, print_)
        if stage.name in forced:
            decision = FRESH
        if decision == SKIP:
            self.echo(f"{label}: up to date, skipped")
            self.manifest.stage_skipped(stage.name, "outputs complete and inputs unchanged")
            return EXIT_OK
        if decision == FRESH:
            moved = self.store.supersede(stage.name, stage.outputs(context))
            if moved is not None and previous is not None:
                why = "forced" if stage.name in forced else "inputs changed"
                self.echo(f"{label}: {why}; previous outputs moved to {moved}")
        verb = "resuming" if decision == RESUME else "running"
        self.echo(f"{label}: {verb} - {stage.title}")
        state = self.store.start(stage.name, print_, described)
        context.resume = decision == RESUME
        self.manifest.stage_started(stage.name, decision, print_, described, _safe_models(stage, context))
        began = time.monotonic()
        try:
            result = stage.run(context, self.echo)
        except Exception as err:  # noqa: BLE001 - any failure is recorded, then reported
            wall = time.monotonic() - began
            self.store.finish(state, FAILED, [], {"error": str(err)})
            self.manifest.stage_finished(stage.name, FAILED, wall, {}, {}, [], message=str(err),
                                         extra={"traceback": traceback.format_exc(limit=8)})
            self.echo(f"{label}: FAILED after {wall:.1f}s: {err}")
            return EXIT_ERROR
        wall = time.monotonic() - began
        status = COMPLETE if result.complete else INCOMPLETE
        self.store.finish(state, status, result.outputs, {"wall_s": round(wall, 3)})
        self.manifest.stage_finished(stage.name, status, wall, self.hasher.many(result.outputs), result.counts,
                                     result.calls, message=result.message)
        self._report_line(label, result, wall, status)
        if status == INCOMPLETE and self.config.on_incomplete == "stop":
            self.echo(f"stopped: {stage.name} is incomplete; fix the cause and run the same command again "
                      f"(finished work is kept and not paid for twice)")
            return EXIT_INCOMPLETE
        return EXIT_OK

    def _report_line(self, label: str, result: StageResult, wall: float, status: str) -> None:
        from mede2_plugin.pipeline.manifest import usage_of

        usage = usage_of(result.calls)
        paid = ""
        if usage["requests"]:
            cost = "unknown" if usage["cost_usd"] is None else f"${usage['cost_usd']:.4f}"
            paid = (f"; {usage['calls']} calls, {usage['cache_hits']} cached, {usage['skipped']} already done, "
                    f"{usage['prompt_tokens']}+{usage['completion_tokens']} tokens, {cost}")
        self.echo(f"{label}: {status} in {wall:.1f}s{paid}" + (f" - {result.message}" if result.message else ""))


def _quiet_llamafactory() -> dict[str, str]:
    """Keep LLaMA-Factory's INFO lines out of this process's output (in-process local models);
    return the environment defaults that keep them in the training logs."""
    original = os.environ.get("LLAMAFACTORY_VERBOSITY")
    if original is None:
        os.environ["LLAMAFACTORY_VERBOSITY"] = "WARN"
    return {"LLAMAFACTORY_VERBOSITY": original or "INFO"}


def _safe_models(stage: PipelineStep, context: Context) -> list[dict[str, Any]]:
    try:
        return stage.models(context)
    except Exception as err:  # noqa: BLE001 - informative only
        return [{"error": f"could not describe the models: {err}"}]


def run_pipeline(config: PipelineConfig, config_file: str | Path | None = None, start: str | None = None,
                 until: str | None = None, force: Sequence[str] = (), argv: Sequence[str] = (),
                 echo: Callable[[str], None] = print) -> int:
    """Run the pipeline (see :class:`Runner`); returns the exit status."""
    runner = Runner(config, str(config_file) if config_file else None, argv, echo)
    return runner.run(start, until, force)
