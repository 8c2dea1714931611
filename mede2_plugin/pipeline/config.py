"""The settings of ``mede2 run``: the whole recipe in one YAML file, as documented dataclasses.

Example ``pipeline.yaml`` (every key optional except what names your data and models)::

    output_dir: runs/qwen2_5vl-7b        # relative to the current directory
    seed: 0
    banks:                               # training question banks, curated one by one
      - {name: medqa, path: MedQA/data_clean/questions/US/train.jsonl, format: medqa}
      - {name: medxpertqa_mm, path: MedXpertQA/MM/dev.jsonl, format: medxpertqa,
         options: {images_dir: MedXpertQA/images}}
    benchmarks:                          # evaluation; also the leakage check's reference
      - {name: medxpertqa_mm, path: MedXpertQA}
      - {name: mmmu_health, path: MMMU}
    roles:                               # who plays which part (BackendConfig fields)
      baseline_solver: {backend: openai, model: gpt-4o}
      strong_solvers: [{backend: gemini, model: gemini-2.5-pro}]
      classifier: {backend: openai, model: gpt-4o}
      rewriter: {backend: openai, model: gpt-4o}
      teachers:
        deepseek-r1: {backend: openai, model: deepseek-reasoner, base_url: https://api.deepseek.com/v1,
                      api_key_env: DEEPSEEK_API_KEY}
      trace_judge: {backend: gemini, model: gemini-2.5-pro}
      judge: {backend: gemini, model: gemini-2.5-pro}
      rollout: {backend: vllm, engine_args: {tensor_parallel_size: 8}}   # model = M1, filled in
      eval: {backend: vllm, engine_args: {tensor_parallel_size: 8}}      # model = M0 / M1 / M2
    models: {base: Qwen/Qwen2.5-VL-7B-Instruct}
    training:
      env: {FORCE_TORCHRUN: "1", NPROC_PER_NODE: "8"}
      stage1: {recipe: recipes/stage1_lora.yaml, merge_recipe: recipes/stage1_merge.yaml}
      stage2: {recipe: recipes/stage2_dpo.yaml}
    curate: {difficulty: {strong: [{samples: 4, temperature: 0.7}]}}   # CurateConfig fields
    distill: {filter: {min_reasoning_chars: 300}}                      # DistillConfig fields
    rollout: {num_candidates: 8}                                       # RolloutConfig fields
    judge: {max_attempts: 3}                                           # JudgeConfig fields
    pairs: {pairs_per_question: 4}                                     # PairsConfig fields
    evaluate: {samples: 8, max_tokens: 4096}                           # EvalSettings fields, models
    prompts: {mmrp_judge: my_judge.j2}                                 # your own prompt files
    prices: {gpt-4o: {input: 2.5, output: 10.0, batch: {input: 1.25, output: 5.0}}}  # USD / Mtok

A file may start from another one: ``extends: pipeline.yaml`` (relative to it) takes that file
and changes what this one says, key by key (``examples/paper/pipeline_internvl3.yaml``).

Every section is the typed config of its stage, so a key that does not exist anywhere in the file
(``judge: {max_atempts: 3}``) is an error naming its key path when the file is loaded, before any
call is made. Relative input paths (banks, benchmarks, recipes, a local base model, the
simulation script, prompt files) are looked up beside the YAML file first, then in the current
directory, and ``recipes/...``, ``examples/...`` and ``templates/...`` also in the files shipped
with the package. Load with :func:`load_pipeline_config` (file, then ``key.path=value`` overrides).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mede2_plugin.client.config import BackendConfig, load_backend_config
from mede2_plugin.client.cost import price_for
from mede2_plugin.core.settings import ConfigError, deep_merge, load_config
from mede2_plugin.curate.config import CurateConfig
from mede2_plugin.data.source import BankSource
from mede2_plugin.distill.config import DistillConfig
from mede2_plugin.evaluate.benchmarks import BenchmarkSpec
from mede2_plugin.evaluate.runner import EvalSettings
from mede2_plugin.mmrp.config import PairsConfig
from mede2_plugin.mmrp.judge import JudgeConfig
from mede2_plugin.mmrp.rollout import RolloutConfig
from mede2_plugin.train.stage import TrainingConfig

#: a role's ``base_url: simulated`` in the YAML: "the local simulated server of the demo"
SIMULATED_WORD = "simulated"
SIMULATED = "http://simulated.invalid/v1"  # what it reads as until the server's address is known
MODEL_LABELS = ("M0", "M1", "M2")
ROLE_NAMES = ("baseline_solver", "classifier", "rewriter", "trace_judge", "judge")


@dataclass
class RolesConfig:
    """Who plays each part of the recipe: a :class:`~mede2_plugin.client.BackendConfig` per role.

    A role left unset (None / empty) keeps what the stage's own section (``curate:``,
    ``distill:``, ...) or its defaults say. A ``base_url`` of ``simulated`` sends the role's calls
    to the local simulated server of the demo (see :class:`SimulatedConfig`).

    Attributes:
        baseline_solver: curation, the solver whose direct answer drops a question (paper: GPT-4o).
        strong_solvers: curation, the solver(s) that must answer at least once in k tries (paper:
            Gemini-2.5-Pro); their settings (samples, temperature) come from
            ``curate.difficulty.strong``.
        classifier: curation, the image-question classifier (paper: GPT-4o).
        rewriter: curation, caption stripping (paper: GPT-4o).
        teachers: Stage-I teachers by name (paper: o1, DeepSeek-R1, QwQ-32B); other teacher
            settings (samples, reasoning mode, summary expansion) come from ``distill.teachers``
            entries of the same name.
        trace_judge: Stage-I coherence judge of teacher traces.
        judge: Stage-II MMRP judge (paper: Gemini-2.5-Pro).
        rollout: how M1 samples rollouts: BackendConfig fields without ``model`` (the pipeline
            fills in M1's folder), e.g. ``{backend: vllm, engine_args: {tensor_parallel_size: 8}}``.
        eval: how M0, M1 and M2 are evaluated, same form as ``rollout``.
    """

    baseline_solver: BackendConfig | None = None
    strong_solvers: list[BackendConfig] = field(default_factory=list)
    classifier: BackendConfig | None = None
    rewriter: BackendConfig | None = None
    teachers: dict[str, BackendConfig] = field(default_factory=dict)
    trace_judge: BackendConfig | None = None
    judge: BackendConfig | None = None
    rollout: dict[str, Any] = field(default_factory=lambda: {"backend": "local"})
    eval: dict[str, Any] = field(default_factory=lambda: {"backend": "local"})

    def api_roles(self) -> list[tuple[str, BackendConfig]]:
        """``(role name, BackendConfig)`` of every API role that is set."""
        found = [(name, getattr(self, name)) for name in ROLE_NAMES if getattr(self, name) is not None]
        found += [(f"strong_solver[{i}]", b) for i, b in enumerate(self.strong_solvers)]
        found += [(f"teacher[{name}]", b) for name, b in self.teachers.items()]
        return found


@dataclass
class ModelsConfig:
    """The base model M0.

    Attributes:
        base: M0, a local folder or a hub id (offline machines: a folder).
        build_tiny: build the tiny random Qwen2-VL of :mod:`mede2_plugin.tiny_model` into
            ``<output_dir>/models/m0`` and use it as M0 (the demo; ``base`` must be empty).
        template: LLaMA-Factory template name, written into every recipe and used by the local
            backend.
    """

    base: str = ""
    build_tiny: bool = False
    template: str = "mede2_qwen2_vl"


@dataclass
class EvaluateSection(EvalSettings):
    """Evaluation of M0, M1 and M2 on ``benchmarks``: the sampling settings of
    :class:`~mede2_plugin.evaluate.runner.EvalSettings` (``samples``, ``temperature``, ``top_p``,
    ``max_tokens``, ``seed`` (default: the run's), ``limit``, ``plot``), and:

    Attributes:
        models: which of M0, M1, M2 to evaluate.
        splits: break the report down by the benchmarks' split fields.
    """

    models: list[str] = field(default_factory=lambda: list(MODEL_LABELS))
    splits: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = [m for m in self.models if m not in MODEL_LABELS]
        if unknown:
            raise ValueError(f"evaluate.models: unknown {unknown}; choose from {list(MODEL_LABELS)}")


@dataclass
class PipelinePairs(PairsConfig):
    """The pairing policy and dataset (:class:`~mede2_plugin.mmrp.config.PairsConfig`), seeded
    by the run's ``seed`` unless ``seed`` is given.

    Attributes:
        seed: seed of the per-question shuffles (None: the run's seed).
    """

    seed: int | None = None  # type: ignore[assignment]


@dataclass
class SimulatedConfig:
    """The demo's stand-ins for the API roles: a local fake OpenAI-compatible server.

    Roles whose ``base_url`` is ``simulated`` are answered by
    :class:`mede2_plugin.testing.FakeOpenAIServer` on 127.0.0.1, with replies scripted by
    :mod:`mede2_plugin.demo.simulated` from ``script`` and the bundled question banks.

    Attributes:
        script: YAML of per-question behaviour (see ``examples/demo/simulated_roles.yaml``).
        latency: seconds each simulated answer waits (0: instant).
        call_log: write every call the server receives to ``<output_dir>/simulated/calls.jsonl``.
    """

    script: str = ""
    latency: float = 0.0
    call_log: bool = True


@dataclass
class PipelineConfig:
    """The whole MedE2 recipe, stage by stage (see the module docstring for an example).

    Attributes:
        output_dir: folder of every stage's outputs, the models, ``manifest.json`` and the report
            (relative paths: to the current directory).
        seed: seed of training, sampling (rollouts, evaluation) and pairing.
        banks: training question banks (:class:`~mede2_plugin.data.source.BankSource`: path,
            format, loader options, name); each is curated on its own, then the text questions
            of all banks go to Stage-I and the image questions to Stage-II.
        benchmarks: evaluation benchmarks (also the reference of the leakage check).
        roles: the model behind each role.
        models: the base model M0.
        curate: curation (:class:`~mede2_plugin.curate.config.CurateConfig`; ``bank``,
            ``output_dir``, the leakage benchmarks and the role backends are set by the pipeline).
        distill: Stage-I data (:class:`~mede2_plugin.distill.config.DistillConfig`; ``questions``,
            ``output_dir`` and the role backends are set by the pipeline).
        rollout: the rollouts (:class:`~mede2_plugin.mmrp.rollout.RolloutConfig`; ``seed``
            defaults to the run's).
        judge: the MMRP judge (:class:`~mede2_plugin.mmrp.judge.JudgeConfig`).
        pairs: the pairing policy and the Stage-II dataset (:class:`PipelinePairs`).
        training: the two ``llamafactory-cli`` stages.
        evaluate: evaluation settings.
        cpu_threads: CPU threads of torch in this process (local-backend rollouts and evaluation)
            and ``OMP_NUM_THREADS`` of the training processes; None leaves torch's default. 1 is the
            robust choice for tiny models on a small shared CPU (several threads of a tiny model
            spend their time waiting for each other when another process takes a core).
        on_incomplete: ``stop`` after a stage that left items pending (failed calls: rerun to
            retry them), or ``continue`` with what it has.
        simulated: the demo's simulated API roles (None: no role may use ``base_url: simulated``).
        prompts: prompt templates replaced by your own jinja files in every stage, ``{NAME: PATH}``
            (a stage's own ``prompts`` add to these); see :mod:`mede2_plugin.core.prompts`.
        allow_outside_media: allow question images outside the banks' and benchmarks' folders.
        prices: USD per million tokens by model for every API role, ``{model: {input, output,
            batch: {input, output}}}``, over the built-in table of
            :mod:`mede2_plugin.client.cost`; a role's own ``prices`` win. Used by the run's cost
            accounting and by ``mede2 run --plan``.
    """

    output_dir: str = "mede2_run"
    seed: int = 0
    banks: list[BankSource] = field(default_factory=list)
    benchmarks: list[BenchmarkSpec] = field(default_factory=list)
    roles: RolesConfig = field(default_factory=RolesConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    curate: CurateConfig = field(default_factory=CurateConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    pairs: PipelinePairs = field(default_factory=PipelinePairs)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    evaluate: EvaluateSection = field(default_factory=EvaluateSection)
    cpu_threads: int | None = None
    on_incomplete: str = "stop"
    simulated: SimulatedConfig | None = None
    prompts: dict[str, str] = field(default_factory=dict)
    allow_outside_media: bool = False
    prices: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.on_incomplete not in ("stop", "continue"):
            raise ValueError(f"on_incomplete must be 'stop' or 'continue', got {self.on_incomplete!r}")
        names = [bank.label for bank in self.banks]
        if len(set(names)) != len(names):
            raise ValueError(f"bank names must differ (give each a name): {names}")
        if self.cpu_threads is not None and self.cpu_threads < 1:
            raise ValueError(f"cpu_threads must be >= 1 or null, got {self.cpu_threads}")
        if self.models.build_tiny and self.models.base:
            raise ValueError("models: give either base or build_tiny, not both")
        for model, entry in self.prices.items():  # a malformed price fails here, not mid-run
            price_for(model, self.prices, use_defaults=False, mode="batch" if "batch" in (entry or {}) else "interactive")
            price_for(model, self.prices, use_defaults=False)

    @property
    def out(self) -> Path:
        return Path(self.output_dir)

    def simulated_roles(self) -> list[str]:
        """Names of the roles whose calls go to the simulated server."""
        return [name for name, backend in self.roles.api_roles() if backend.base_url == SIMULATED]


def model_backend(template: dict[str, Any], model: str, role: str) -> BackendConfig:
    """The BackendConfig of ``roles.rollout`` / ``roles.eval`` for one model folder."""
    data = copy.deepcopy(template)
    if data.get("model"):
        raise ConfigError(f"roles.{role}: leave out 'model'; the pipeline fills in the model it trains")
    data["model"] = model
    try:
        return load_backend_config(data)
    except ValueError as err:
        raise ConfigError(f"roles.{role}: {err}") from None


# -- paths --------------------------------------------------------------------------------------

def resolve_input(path: str, config_dir: Path | None) -> str:
    """An input path made absolute: beside the config, in the current directory, or shipped."""
    if not path or "://" in path:
        return path
    candidate = Path(path).expanduser()
    if candidate.is_absolute():
        return str(candidate)
    bases = ([config_dir] if config_dir else []) + [Path.cwd()]
    for base in bases:
        if (base / candidate).exists():
            return str((base / candidate).resolve())
    first = candidate.parts[0] if candidate.parts else ""
    if first in ("recipes", "examples", "templates"):
        from mede2_plugin.core.resources import resource_dir

        try:
            shipped = resource_dir(first).joinpath(*candidate.parts[1:])
        except FileNotFoundError:
            shipped = None
        if shipped is not None and shipped.exists():
            return str(shipped)
    return str(((config_dir or Path.cwd()) / candidate).resolve())


def _looks_local(path: str, config_dir: Path | None) -> bool:
    """A model name is a local folder when it exists there, or starts like a path."""
    if not path:
        return False
    if path.startswith((".", "/", "~")):
        return True
    bases = ([config_dir] if config_dir else []) + [Path.cwd()]
    return any((base / path).exists() for base in bases)


def resolve_paths(config: PipelineConfig, config_dir: Path | None) -> PipelineConfig:
    """Make the input paths of ``config`` absolute (in place) and return it."""
    for bank in config.banks:
        bank.path = resolve_input(bank.path, config_dir)
        for key, value in bank.path_options().items():
            bank.options[key] = resolve_input(value, config_dir)
    for bench in config.benchmarks:
        bench.path = resolve_input(bench.path, config_dir)
    if _looks_local(config.models.base, config_dir):
        config.models.base = resolve_input(config.models.base, config_dir)
    for stage in (config.training.stage1, config.training.stage2):
        stage.recipe = resolve_input(stage.recipe, config_dir)
        if stage.merge_recipe:
            stage.merge_recipe = resolve_input(stage.merge_recipe, config_dir)
    if config.simulated is not None and config.simulated.script:
        config.simulated.script = resolve_input(config.simulated.script, config_dir)
    for section in (config, config.curate, config.distill):
        section.prompts = {name: resolve_input(path, config_dir) for name, path in section.prompts.items()}
    return config


def check_config(config: PipelineConfig) -> None:
    """Errors that need no file to be opened: missing banks, models, simulated roles."""
    if not config.banks:
        raise ConfigError("banks: give at least one training question bank")
    if not config.models.base and not config.models.build_tiny:
        raise ConfigError("models.base: give the base model (a folder or hub id), or models.build_tiny: true")
    simulated = config.simulated_roles()
    if simulated and (config.simulated is None or not config.simulated.script):
        raise ConfigError(f"roles {simulated} use base_url: {SIMULATED_WORD}, which needs simulated.script")
    for name in ("rollout", "eval"):
        model_backend(getattr(config.roles, name), "placeholder", name)
    for bench in config.benchmarks:
        if not bench.name or not bench.path:
            raise ConfigError(f"benchmarks: every entry needs a name and a path, got {bench}")


def _prepare(data: dict[str, Any]) -> None:
    """Before the sections are built: ``base_url: simulated`` becomes :data:`SIMULATED`, and the
    roles' backends go into the sections of the stages that call them (so every section checks
    out as its stage's config)."""
    roles = data.get("roles") or {}
    backends = [roles.get(name) for name in ROLE_NAMES] + list(roles.get("strong_solvers") or [])
    teachers = roles.get("teachers") if isinstance(roles.get("teachers"), dict) else {}
    for backend in backends + list(teachers.values()):
        if isinstance(backend, dict) and backend.get("base_url") == SIMULATED_WORD:
            backend["base_url"] = SIMULATED
    curate, distill = data.get("curate"), data.get("distill")
    if not isinstance(curate, dict) or not isinstance(distill, dict):
        return  # not a mapping: the build names the key
    difficulty = curate.setdefault("difficulty", {})
    if roles.get("baseline_solver") is not None:
        difficulty["baseline"] = {**(difficulty.get("baseline") or {}), "backend": roles["baseline_solver"]}
    if roles.get("strong_solvers"):
        given = difficulty.get("strong") or [{"samples": 4, "temperature": 0.7}]
        difficulty["strong"] = [{**copy.deepcopy(given[min(i, len(given) - 1)]), "backend": backend}
                                for i, backend in enumerate(roles["strong_solvers"])]
    for section, key, name, role in ((curate, "classify", "classifier", "classifier"),
                                     (curate, "strip", "rewriter", "rewriter"), (distill, "filter", "judge", "trace_judge")):
        if roles.get(role) is not None:
            section.setdefault(key, {})[name] = roles[role]
    if teachers:
        given = {t.get("name"): t for t in distill.get("teachers") or [] if isinstance(t, dict)}
        distill["teachers"] = [{**copy.deepcopy(given.get(name, {})), "name": name, "backend": backend}
                               for name, backend in teachers.items()]


def read_extended(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any] | None:
    """A pipeline YAML holding ``extends: BASE.yaml`` (relative to it), merged over its base key by
    key (lists replaced); None for a file that extends nothing."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        if not seen:
            return None  # the loader names the problem
        raise ConfigError(f"{path}: cannot read the pipeline file ({err})") from None
    if not isinstance(data, dict) or "extends" not in data:
        return None if not seen else data
    base = (path.parent / str(data.pop("extends"))).resolve()
    if base in seen or base == path.resolve():
        raise ConfigError(f"{path}: extends {base}, which extends it again")
    return deep_merge(read_extended(base, (*seen, path.resolve())) or {}, data)


def load_pipeline_config(source: str | Path | dict[str, Any] | None = None,
                         overrides: list[str] | tuple[str, ...] = (),
                         config_dir: str | Path | None = None) -> PipelineConfig:
    """The pipeline settings: defaults, then ``source`` (YAML file, which may name a base file
    with ``extends:``, or dict), then ``key.path=value`` overrides; input paths made absolute
    (see the module docstring), then checked."""
    extended = read_extended(Path(source)) if isinstance(source, (str, Path)) else None
    config = load_config(PipelineConfig, source if extended is None else extended, overrides, prepare=_prepare)
    if config_dir is None and isinstance(source, (str, Path)):
        config_dir = Path(source).resolve().parent
    resolve_paths(config, Path(config_dir) if config_dir else None)
    check_config(config)
    return config
