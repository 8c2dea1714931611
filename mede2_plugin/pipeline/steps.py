"""The steps of ``mede2 run`` in order, each a stage package's :class:`~mede2_plugin.core.stage.Step`
with the config the pipeline builds for it from the pipeline file.

    curate -> distill -> train_stage1 -> rollout -> judge -> pairs -> train_stage2 -> evaluate -> report

The stages own what they do (running, inputs, outputs, models); here each step's config is wired
to the run's folders (:data:`LAYOUT`) and to the roles, and an API role whose ``base_url`` is
``simulated`` is pointed at the demo's local server. Every step writes under ``<output_dir>``::

    models/m0/                tiny base model (demo: models.build_tiny)
    curate/<bank>/            curation of each bank;  curate/stage1_questions.jsonl (text),
                              curate/stage2_questions.jsonl (images)
    distill/                  teacher traces, filter;  distill/data/ = the Stage-I dataset
    train/                    the effective llamafactory-cli recipes;  logs/ their output
    models/stage1_adapter/, models/m1/, models/m2/
    rollout/rollouts.jsonl    judge/judged.jsonl    pairs/ = the Stage-II dataset
    eval/<M0|M1|M2>/<benchmark>/    report/report.{md,csv}, report/report_scaling.{csv,png}
    cache/                    response caches (API roles; local models by weight hash)
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mede2_plugin.client.config import BackendConfig
from mede2_plugin.core.stage import Projected, StageInputs, StagePlan, StageResult, Step
from mede2_plugin.core.steps import slug
from mede2_plugin.curate import stage as curate_stage
from mede2_plugin.curate.config import CurateConfig
from mede2_plugin.data.source import BankSource
from mede2_plugin.distill import stage as distill_stage
from mede2_plugin.distill.config import DistillConfig
from mede2_plugin.evaluate import stage as evaluate_stage
from mede2_plugin.evaluate.benchmarks import (
    benchmark_files,
    loader_options,
    resolve_benchmarks,
)
from mede2_plugin.evaluate.config import EvalConfig, ReportConfig
from mede2_plugin.evaluate.runner import EvalSettings
from mede2_plugin.mmrp import stage as mmrp_stage
from mede2_plugin.mmrp.config import MMRPConfig, PairsConfig
from mede2_plugin.pipeline.config import SIMULATED, PipelineConfig, model_backend
from mede2_plugin.pipeline.state import ContentHasher
from mede2_plugin.train import stage as train_stage

LAYOUT = {
    "state": "state", "logs": "logs", "cache": "cache", "train": "train", "models": "models",
    "m0": "models/m0", "stage1_adapter": "models/stage1_adapter", "m1": "models/m1",
    "stage2_adapter": "models/stage2_adapter", "m2": "models/m2",
    "curate": "curate", "stage1_questions": "curate/stage1_questions.jsonl",
    "stage2_questions": "curate/stage2_questions.jsonl",
    "distill": "distill", "stage1_data": "distill/data",
    "rollout": "rollout", "rollouts": "rollout/rollouts.jsonl",
    "judge": "judge", "judged": "judge/judged.jsonl",
    "pairs": "pairs", "eval": "eval", "report": "report", "report_prefix": "report/report",
    "simulated_calls": "simulated/calls.jsonl", "manifest": "manifest.json",
}


class Layout:
    """Where every output of a run lives: ``layout.m1`` is ``<out>/models/m1`` (see :data:`LAYOUT`)."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out).resolve()

    def __getattr__(self, name: str) -> Path:
        if name not in LAYOUT:
            raise AttributeError(name)
        return self.out / LAYOUT[name]


@dataclass
class Context:
    """What the steps' configs are built from.

    Attributes:
        config: the pipeline settings (input paths absolute).
        layout: output locations.
        hasher: content hashes (cached).
        simulated_url: the demo's local server, when a role is simulated.
        training_env: environment defaults of the training processes (their log verbosity).
        resume: the step about to run continues an interrupted one (training resumes its checkpoint).
    """

    config: PipelineConfig
    layout: Layout
    hasher: ContentHasher
    simulated_url: str | None = None
    training_env: dict[str, str] = field(default_factory=dict)
    resume: bool = False

    # -- models and roles -------------------------------------------------------------------
    def model_path(self, label: str) -> str:
        """M0 (the base: a folder or a hub id), M1 or M2 (folders under ``models/``)."""
        if label == "M0":
            return str(self.layout.m0) if self.config.models.build_tiny else self.config.models.base
        return str({"M1": self.layout.m1, "M2": self.layout.m2}[label])

    def model_role(self, role: str, label: str) -> BackendConfig:
        """``roles.rollout`` / ``roles.eval`` for model ``label``, with its own response cache."""
        path = self.model_path(label)
        backend = model_backend(getattr(self.config.roles, role), path, role)
        engine_args = dict(backend.engine_args)
        if backend.backend == "local":
            engine_args.setdefault("template", self.config.models.template)
        digest = self.hasher.path(path) if Path(path).exists() else slug(path)
        cache = backend.cache_dir or str(self.layout.cache / f"{backend.backend}-{label}-{(digest or 'none')[:16]}")
        return backend.replace(engine_args=engine_args, cache_dir=cache, progress=sys.stderr.isatty())

    def api_role(self, backend: BackendConfig | None, runtime: bool) -> BackendConfig | None:
        """An API role as declared (``runtime=False``: what decides answers) or as called: the
        simulated server's address filled in (nothing paid), one shared response cache."""
        if backend is None or not runtime:
            return backend
        changes: dict[str, Any] = {"progress": backend.progress and sys.stderr.isatty(),
                                   "prices": {**self.config.prices, **(backend.prices or {})} or None}
        if backend.base_url == SIMULATED:
            changes.update(base_url=self.simulated_url, prices={backend.model: {"input": 0.0, "output": 0.0}})
        if backend.cache_dir is None:
            changes["cache_dir"] = str(self.layout.cache / "api")
        return backend.replace(**changes)

    def as_called(self, config: Any, runtime: bool) -> Any:
        """``config`` with every API backend in it as called (see :meth:`api_role`)."""
        if not runtime:
            return config
        if isinstance(config, BackendConfig):
            return self.api_role(config, runtime)
        if isinstance(config, list):
            return [self.as_called(item, runtime) for item in config]
        if dataclasses.is_dataclass(config) and not isinstance(config, type):
            changes = {f.name: self.as_called(getattr(config, f.name), runtime) for f in dataclasses.fields(config)
                       if isinstance(getattr(config, f.name), (BackendConfig, list)) or
                       dataclasses.is_dataclass(getattr(config, f.name))}
            return dataclasses.replace(config, **changes) if changes else config
        return config

    def media_roots(self) -> list[str]:
        """Folders the runs' question images may lie in: every bank's and benchmark's."""
        roots = [root for bank in self.config.banks for root in bank.media_roots()]
        return list(dict.fromkeys(roots + [spec.path for spec in self.config.benchmarks]))

    def prompts(self, section: dict[str, str] | None = None) -> dict[str, str]:
        return {**self.config.prompts, **(section or {})}


# -- each step's config, wired to the run ------------------------------------------------------------

def _leakage_sources(ctx: Context) -> list[BankSource]:
    """The benchmark files as question banks for the curation leakage check."""
    media = ctx.layout.curate / "leakage_media"
    specs = ctx.config.benchmarks
    return [BankSource(path=str(path), format=config.format, options=loader_options(config, location, media),
                       name=f"{config.name}:{path.name}")
            for (config, location), spec in zip(resolve_benchmarks(specs), specs) if spec.leakage
            for path in benchmark_files(config, location)]


def curate_config(ctx: Context, bank: BankSource, runtime: bool) -> CurateConfig:
    """The curation of one bank: the ``curate:`` section (the roles already in it), the bank, its folder."""
    base = ctx.config.curate
    leakage = dataclasses.replace(base.leakage, benchmarks=[*base.leakage.benchmarks, *_leakage_sources(ctx)])
    config = dataclasses.replace(
        base, bank=bank, output_dir=str(ctx.layout.curate / slug(bank.label)), leakage=leakage,
        media_roots=[*base.media_roots, *ctx.media_roots()],
        allow_outside_media=base.allow_outside_media or ctx.config.allow_outside_media, prompts=ctx.prompts(base.prompts))
    return ctx.as_called(config, runtime)


def curate_run(ctx: Context, runtime: bool) -> curate_stage.CurateRun:
    return curate_stage.CurateRun(banks=[curate_config(ctx, bank, runtime) for bank in ctx.config.banks],
                                  out_dir=str(ctx.layout.curate), text_questions=str(ctx.layout.stage1_questions),
                                  image_questions=str(ctx.layout.stage2_questions))


def distill_config(ctx: Context, runtime: bool) -> DistillConfig:
    """Stage-I data: the ``distill:`` section (the teachers and trace judge of the roles in it)."""
    base = ctx.config.distill
    config = dataclasses.replace(
        base, questions=BankSource(path=str(ctx.layout.stage1_questions), format="bank"),
        output_dir=str(ctx.layout.distill), build=dataclasses.replace(base.build, dataset_dir=str(ctx.layout.stage1_data)),
        media_roots=[*base.media_roots, *ctx.media_roots()],
        allow_outside_media=base.allow_outside_media or ctx.config.allow_outside_media, prompts=ctx.prompts(base.prompts))
    return ctx.as_called(config, runtime)


def mmrp_config(ctx: Context, runtime: bool) -> MMRPConfig:
    """Stage-II data: M1 and the judge of the roles, the sections, the run's files."""
    config = ctx.config
    rollout = dataclasses.replace(config.rollout, seed=config.seed if config.rollout.seed is None else config.rollout.seed,
                                  media_roots=[*config.rollout.media_roots, *ctx.media_roots()],
                                  allow_outside_media=config.rollout.allow_outside_media or config.allow_outside_media)
    pairs = PairsConfig(**{f.name: getattr(config.pairs, f.name) for f in dataclasses.fields(PairsConfig)})
    pairs.seed = config.seed if pairs.seed is None else pairs.seed
    m1 = ctx.model_role("rollout", "M1") if runtime else model_backend(config.roles.rollout, str(ctx.layout.m1), "rollout")
    judge = ctx.api_role(config.roles.judge, runtime) or MMRPConfig().judge_backend
    return MMRPConfig(questions=str(ctx.layout.stage2_questions), rollouts=str(ctx.layout.rollouts),
                      judged=str(ctx.layout.judged), out_dir=str(ctx.layout.pairs), m1_backend=m1,
                      judge_backend=judge, rollout=rollout, judge=config.judge, pairs=pairs, prompts=ctx.prompts())


def train_run(ctx: Context, name: str, runtime: bool) -> train_stage.TrainRun:
    """One ``llamafactory-cli`` stage: stage1 trains M1 from M0 on the Stage-I data, stage2 M2 from M1."""
    config, layout = ctx.config, ctx.layout
    training = config.training
    env = {**ctx.training_env, **training.env}
    if config.cpu_threads is not None:
        env.setdefault("OMP_NUM_THREADS", str(config.cpu_threads))
    stage1 = name == "stage1"
    chat_template = None
    if runtime:
        from mede2_plugin.llamafactory_ext.chat_template import chat_template as render

        chat_template = render(config.models.template)
    return train_stage.TrainRun(
        name=name, stage=getattr(training, name), base=ctx.model_path("M0" if stage1 else "M1"),
        data_dir=layout.stage1_data if stage1 else layout.pairs,
        dataset=config.distill.build.dataset_name if stage1 else config.pairs.name,
        adapter_dir=layout.stage1_adapter if stage1 else layout.stage2_adapter,
        model_dir=layout.m1 if stage1 else layout.m2, recipes_dir=layout.train, log=layout.logs / f"{name}.log",
        template=config.models.template, chat_template=chat_template, seed=config.seed, launcher=training.launcher,
        env=env, shown_env=dict(training.env), resume=ctx.resume)


def eval_configs(ctx: Context, runtime: bool) -> list[EvalConfig]:
    """M0, M1 and M2 (as chosen) on the benchmarks, each with the eval role's backend."""
    config = ctx.config
    section = config.evaluate
    sampling = {f.name: getattr(section, f.name) for f in dataclasses.fields(EvalSettings)}
    sampling.update(seed=config.seed if section.seed is None else section.seed, plot=evaluate_stage.can_plot())
    return [EvalConfig(**sampling, benchmarks=config.benchmarks, out=str(ctx.layout.eval), label=label,
                       model=ctx.model_role("eval", label) if runtime else
                       model_backend(config.roles.eval, ctx.model_path(label), "eval"),
                       allow_outside_media=config.allow_outside_media, prompts=ctx.prompts())
            for label in section.models]


def report_config(ctx: Context, runtime: bool) -> ReportConfig:
    models = ctx.config.evaluate.models
    return ReportConfig(runs=[str(ctx.layout.eval / label) for label in models], base=models[0] if models else None,
                        splits=ctx.config.evaluate.splits, out=str(ctx.layout.report_prefix))


# -- the base model of the demo -------------------------------------------------------------------

def prepare(ctx: Context, echo: Callable[[str], None] = print) -> StageResult:
    if not ctx.config.models.build_tiny:
        return StageResult(counts={"base": ctx.config.models.base})
    from mede2_plugin.tiny_model import build_tiny_qwen2_vl

    target = ctx.layout.m0
    if target.exists():
        shutil.rmtree(target)
    build_tiny_qwen2_vl(target, seed=ctx.config.seed)
    echo(f"  built the tiny random Qwen2-VL (about 0.5M parameters) as M0 in {target}")
    return StageResult(outputs=[target], counts={"base": "tiny random Qwen2-VL"})


PREPARE_STEP = Step("prepare", "base model", prepare,
                    lambda ctx: StageInputs(values={"build_tiny": ctx.config.models.build_tiny, "seed": ctx.config.seed}),
                    lambda ctx: [ctx.layout.m0] if ctx.config.models.build_tiny else [])


# -- the registry --------------------------------------------------------------------------------

@dataclass(frozen=True)
class PipelineStep:
    """A stage package's step under its pipeline name, with the config the pipeline builds for it.

    Attributes:
        name: the step's name in ``mede2 run`` (``--from``, ``--force``).
        step: the stage package's step.
        configure: its config from the run (``runtime=False``: the roles as declared, for the
            fingerprint; True: as called).
        roles: the API roles it calls (a simulated one makes the simulation script an input).
    """

    name: str
    step: Step
    configure: Callable[[Context, bool], Any]
    roles: tuple[str, ...] = ()

    @property
    def title(self) -> str:
        return self.step.title

    def inputs(self, ctx: Context) -> StageInputs:
        return self.step.inputs(self.configure(ctx, False)).add(simulation_inputs(ctx, self.roles))

    def outputs(self, ctx: Context) -> list[Path]:
        return self.step.outputs(self.configure(ctx, False))

    def models(self, ctx: Context) -> list[dict[str, Any]]:
        return self.step.models(self.configure(ctx, True))

    def run(self, ctx: Context, echo: Callable[[str], None]) -> StageResult:
        return self.step.run(self.configure(ctx, True), echo)

    def plan(self, ctx: Context, projected: Projected) -> StagePlan | None:
        """The calls it would make, as declared (``mede2 run --plan``); None: it makes none."""
        return None if self.step.plan is None else self.step.plan(self.configure(ctx, False), projected)


def simulation_inputs(ctx: Context, roles: tuple[str, ...]) -> StageInputs:
    """When any of ``roles`` is simulated, its script and rules decide the answers: fingerprint them."""
    from mede2_plugin.demo import simulated

    declared = dict(ctx.config.roles.api_roles())
    used = [r for r in roles if any(name == r or name.startswith(f"{r}[") for name in declared
                                    if declared[name].base_url == SIMULATED)]
    if not used or ctx.config.simulated is None:
        return StageInputs()
    rules = hashlib.sha256(Path(simulated.__file__).read_bytes()).hexdigest()
    return StageInputs(files=[ctx.config.simulated.script], values={"simulated_rules": rules})


ROLLOUT, JUDGE, PAIRS = mmrp_stage.STEPS
EVALUATE, REPORT = evaluate_stage.STEPS
PREPARE = PipelineStep("prepare", PREPARE_STEP, lambda ctx, runtime: ctx)
STEPS: list[PipelineStep] = [
    PipelineStep("curate", curate_stage.STEP, curate_run, ("baseline_solver", "classifier", "rewriter", "strong_solver")),
    PipelineStep("distill", distill_stage.STEP, distill_config, ("trace_judge", "teacher")),
    PipelineStep("train_stage1", dataclasses.replace(train_stage.STEP, title="Stage-I training: LoRA SFT, merge -> M1"),
                 lambda ctx, runtime: train_run(ctx, "stage1", runtime)),
    PipelineStep("rollout", ROLLOUT, mmrp_config),
    PipelineStep("judge", JUDGE, mmrp_config, ("judge",)),
    PipelineStep("pairs", PAIRS, mmrp_config),
    PipelineStep("train_stage2", dataclasses.replace(train_stage.STEP, title="Stage-II training: DPO -> M2"),
                 lambda ctx, runtime: train_run(ctx, "stage2", runtime)),
    PipelineStep("evaluate", EVALUATE, eval_configs),
    PipelineStep("report", REPORT, report_config),
]
STAGE_NAMES = [step.name for step in STEPS]


def apply_cpu_threads(threads: int | None) -> None:
    """Torch's CPU threads in this process (local models), when set."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
