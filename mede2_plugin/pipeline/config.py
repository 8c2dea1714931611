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
    pairs: {pairs_per_question: 4}                                     # PairingPolicy fields
    evaluate: {samples: 8, max_tokens: 4096}

Relative input paths (banks, benchmarks, recipes, a local base model, the simulation script)
are looked up beside the YAML file first, then in the current directory, and ``recipes/...``,
``examples/...`` and ``templates/...`` also in the files shipped with the package. Load with
:func:`load_pipeline_config` (file, then ``key.path=value`` overrides).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mede2_plugin.client.config import BackendConfig
from mede2_plugin.curate.common import BankSource
from mede2_plugin.settings import ConfigError, load_config

SIMULATED = "simulated"  # a role's base_url that means "the local simulated server of the demo"
MODEL_LABELS = ("M0", "M1", "M2")
PATH_OPTION_SUFFIXES = ("_dir", "_file", "_path")


@dataclass
class BenchmarkSpec:
    """One evaluation benchmark and where its public release lies.

    Attributes:
        name: a built-in benchmark of :data:`mede2_plugin.evaluate.benchmarks.BENCHMARKS`
            (``medqa``, ``medbullets_op4``, ``medxpertqa_mm``, ``mmmu_health``, ...) or a new name
            defined by ``definition``.
        path: the benchmark's root folder (public release layout) or a single file.
        definition: fields of :class:`~mede2_plugin.evaluate.benchmarks.BenchmarkConfig` for a
            benchmark that is not built in (``format``, ``files``, ``title``, ``splits``, ...),
            or overrides of a built-in one.
        leakage: also use this benchmark's questions in the curation leakage check.
    """

    name: str = ""
    path: str = ""
    definition: dict[str, Any] = field(default_factory=dict)
    leakage: bool = True


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
class TrainStageConfig:
    """One training stage through ``llamafactory-cli``.

    Attributes:
        recipe: the ``llamafactory-cli train`` YAML (our ``recipes/`` or a copy).
        overrides: keys set over the recipe (``learning_rate``, ``num_train_epochs``, ...). The
            pipeline itself always sets ``model_name_or_path``, ``dataset_dir``, ``dataset``,
            ``output_dir``, ``template`` and ``seed``.
        merge_recipe: the ``llamafactory-cli export`` YAML that merges a LoRA adapter (used when
            the training is LoRA; ignored for full fine-tuning).
        merge_overrides: keys set over the merge recipe.
    """

    recipe: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)
    merge_recipe: str | None = None
    merge_overrides: dict[str, Any] = field(default_factory=dict)


def _stage1_default() -> TrainStageConfig:
    return TrainStageConfig(recipe="recipes/stage1_lora.yaml", merge_recipe="recipes/stage1_merge.yaml")


def _stage2_default() -> TrainStageConfig:
    return TrainStageConfig(recipe="recipes/stage2_dpo.yaml", merge_recipe="recipes/stage1_merge.yaml")


@dataclass
class TrainingConfig:
    """Both training stages. Several GPUs or nodes go through LLaMA-Factory's own launcher:
    ``llamafactory-cli`` starts ``torchrun`` when ``FORCE_TORCHRUN=1`` (with ``NPROC_PER_NODE``,
    ``NNODES``, ``NODE_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``), from the environment of
    ``mede2 run`` or from ``env`` below; DeepSpeed ZeRO-3 comes from the recipe's ``deepspeed`` key.

    Attributes:
        stage1: Stage-I (LoRA SFT, then merge -> M1).
        stage2: Stage-II (full DPO -> M2; LoRA recipes are merged too).
        launcher: the LLaMA-Factory command (default: the one beside this Python).
        env: environment variables set for the training processes (values as strings).
    """

    stage1: TrainStageConfig = field(default_factory=_stage1_default)
    stage2: TrainStageConfig = field(default_factory=_stage2_default)
    launcher: str = "llamafactory-cli"
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class EvaluateConfig:
    """Evaluation of M0, M1 and M2 on ``benchmarks`` (fields of
    :class:`~mede2_plugin.evaluate.runner.EvalSettings`, plus which models).

    Attributes:
        models: which of M0, M1, M2 to evaluate.
        samples: outputs per question; above 1 gives pass@n / majority-vote@n scaling curves.
        temperature: sampling temperature (None: 0 for one sample, the paper's 0.5 for several).
        top_p: nucleus sampling (None: the backend's default).
        max_tokens: most new tokens per output.
        limit: evaluate only the first N questions of each benchmark.
        splits: break the report down by the benchmarks' split fields.
    """

    models: list[str] = field(default_factory=lambda: list(MODEL_LABELS))
    samples: int = 1
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int = 4096
    limit: int | None = None
    splits: bool = False

    def __post_init__(self) -> None:
        unknown = [m for m in self.models if m not in MODEL_LABELS]
        if unknown:
            raise ValueError(f"evaluate.models: unknown {unknown}; choose from {list(MODEL_LABELS)}")


@dataclass
class SimulatedConfig:
    """The demo's stand-ins for the API roles: a local fake OpenAI-compatible server.

    Roles whose ``base_url`` is ``simulated`` are answered by
    :class:`mede2_plugin.testing.FakeOpenAIServer` on 127.0.0.1, with replies scripted by
    :mod:`mede2_plugin.pipeline.simulated` from ``script`` and the bundled question banks.

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
        banks: training question banks (:class:`~mede2_plugin.curate.common.BankSource`: path,
            format, loader options, name); each is curated on its own, then the text questions
            of all banks go to Stage-I and the image questions to Stage-II.
        benchmarks: evaluation benchmarks (also the reference of the leakage check).
        roles: the model behind each role.
        models: the base model M0.
        curate: settings of curation (fields of ``CurateConfig``; ``bank``, ``output_dir``, the
            leakage benchmarks and the role backends are set by the pipeline).
        distill: settings of Stage-I data (fields of ``DistillConfig``; ``questions``,
            ``output_dir`` and the role backends are set by the pipeline).
        rollout: settings of the rollouts (fields of ``RolloutConfig``).
        judge: settings of the MMRP judge (fields of ``JudgeConfig``).
        pairs: the pairing policy (fields of ``PairingPolicy``).
        training: the two ``llamafactory-cli`` stages.
        evaluate: evaluation settings.
        cpu_threads: CPU threads of torch in this process (local-backend rollouts and evaluation)
            and ``OMP_NUM_THREADS`` of the training processes; None leaves torch's default. 1 is the
            robust choice for tiny models on a small shared CPU (several threads of a tiny model
            spend their time waiting for each other when another process takes a core).
        on_incomplete: ``stop`` after a stage that left items pending (failed calls: rerun to
            retry them), or ``continue`` with what it has.
        simulated: the demo's simulated API roles (None: no role may use ``base_url: simulated``).
    """

    output_dir: str = "mede2_run"
    seed: int = 0
    banks: list[BankSource] = field(default_factory=list)
    benchmarks: list[BenchmarkSpec] = field(default_factory=list)
    roles: RolesConfig = field(default_factory=RolesConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    curate: dict[str, Any] = field(default_factory=dict)
    distill: dict[str, Any] = field(default_factory=dict)
    rollout: dict[str, Any] = field(default_factory=dict)
    judge: dict[str, Any] = field(default_factory=dict)
    pairs: dict[str, Any] = field(default_factory=dict)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    cpu_threads: int | None = None
    on_incomplete: str = "stop"
    simulated: SimulatedConfig | None = None

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

    @property
    def out(self) -> Path:
        return Path(self.output_dir)

    def simulated_roles(self) -> list[str]:
        """Names of the roles whose calls go to the simulated server."""
        return [name for name, backend in iter_role_backends(self.roles) if backend.base_url == SIMULATED]


def iter_role_backends(roles: RolesConfig) -> list[tuple[str, BackendConfig]]:
    """``(role name, BackendConfig)`` of every API role that is set."""
    found: list[tuple[str, BackendConfig]] = []
    for name in ("baseline_solver", "classifier", "rewriter", "trace_judge", "judge"):
        backend = getattr(roles, name)
        if backend is not None:
            found.append((name, backend))
    found += [(f"strong_solver[{i}]", b) for i, b in enumerate(roles.strong_solvers)]
    found += [(f"teacher[{name}]", b) for name, b in roles.teachers.items()]
    return found


def model_backend(template: dict[str, Any], model: str, role: str) -> BackendConfig:
    """The BackendConfig of ``roles.rollout`` / ``roles.eval`` for one model folder."""
    from mede2_plugin.client.config import load_backend_config

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
        from mede2_plugin.resources import resource_dir

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
        for key, value in list(bank.options.items()):
            if isinstance(value, str) and key.endswith(PATH_OPTION_SUFFIXES):
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
    return config


def check_config(config: PipelineConfig) -> None:
    """Errors that need no file to be opened: missing banks, models, simulated roles."""
    if not config.banks:
        raise ConfigError("banks: give at least one training question bank")
    if not config.models.base and not config.models.build_tiny:
        raise ConfigError("models.base: give the base model (a folder or hub id), or models.build_tiny: true")
    simulated = config.simulated_roles()
    if simulated and (config.simulated is None or not config.simulated.script):
        raise ConfigError(f"roles {simulated} use base_url: {SIMULATED}, which needs simulated.script")
    for name in ("rollout", "eval"):
        model_backend(getattr(config.roles, name), "placeholder", name)
    for bench in config.benchmarks:
        if not bench.name or not bench.path:
            raise ConfigError(f"benchmarks: every entry needs a name and a path, got {bench}")


def _teacher_backends(teachers: Any) -> dict[str, BackendConfig]:
    """``roles.teachers`` as name -> BackendConfig (the generic loader leaves mappings as dicts)."""
    from mede2_plugin.client.config import load_backend_config

    if not isinstance(teachers, dict):
        raise ConfigError(f"roles.teachers: expected a mapping of teacher name -> backend, got {type(teachers).__name__}")
    built = {}
    for name, backend in teachers.items():
        try:
            built[str(name)] = backend if isinstance(backend, BackendConfig) else load_backend_config(backend or {})
        except ValueError as err:
            raise ConfigError(f"roles.teachers.{name}: {err}") from None
    return built


def load_pipeline_config(source: str | Path | dict[str, Any] | None = None,
                         overrides: list[str] | tuple[str, ...] = (),
                         config_dir: str | Path | None = None) -> PipelineConfig:
    """The pipeline settings: defaults, then ``source`` (YAML file or dict), then ``key.path=value``
    overrides; input paths made absolute (see the module docstring), then checked."""
    config = load_config(PipelineConfig, source, overrides)
    config.roles.teachers = _teacher_backends(config.roles.teachers)
    if config_dir is None and isinstance(source, (str, Path)):
        config_dir = Path(source).resolve().parent
    resolve_paths(config, Path(config_dir) if config_dir else None)
    check_config(config)
    return config
