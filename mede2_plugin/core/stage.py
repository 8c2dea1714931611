"""What a stage declares and returns, shared by the stage packages and ``mede2 run``.

Every stage package (``curate``, ``distill``, ``mmrp``, ``evaluate``, ``train``) exposes its work as
:class:`Step` entries: how to run it from its config, which inputs decide its outputs (the
fingerprint ``mede2 run`` skips it by), which outputs it owns (moved aside before a redo) and
which models it calls (for the run manifest). The pipeline only builds each step's config, orders
the steps and records them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class StageInputs:
    """What a step's outputs depend on.

    Attributes:
        files: input files and folders (content-hashed).
        settings: the step's settings as plain data (role backends without pacing or price fields).
        templates: prompt templates it renders (``prompts/NAME.j2``), hashed by content.
        prompts: the user's replacements of templates, ``{NAME: PATH}`` (their content is hashed).
        values: anything else that decides its outputs (model ids that are not folders, ...).
    """

    files: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    templates: list[str] = field(default_factory=list)
    prompts: dict[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)

    def add(self, other: StageInputs) -> StageInputs:
        """These inputs and ``other``'s together (in place); returns self."""
        self.files += other.files
        self.settings.update(other.settings)
        self.templates += other.templates
        self.prompts.update(other.prompts)
        self.values.update(other.values)
        return self


@dataclass
class StageResult:
    """What a step reports back.

    Attributes:
        outputs: the files and folders it produced (hashed into its state and the manifest).
        counts: figures for the manifest and the summary.
        calls: ``BatchSummary`` dicts of the model calls of this run.
        complete: False when items are pending (failed calls a rerun retries) or nothing came out.
        message: one line for the user.
    """

    outputs: list[Path] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)
    calls: list[dict[str, Any]] = field(default_factory=list)
    complete: bool = True
    message: str = ""


@dataclass
class PlannedCalls:
    """The calls one role of a step would make, rendered but never sent (``mede2 run --plan``).

    Attributes:
        role: the role (``baseline_solver``, ``teacher[o1]``, ``judge``, ...).
        backend: its ``BackendConfig``.
        output: the results file the calls are written to (ids answered there cost nothing).
        certain: requests sent whatever earlier answers say (the bottom of the range).
        possible: requests sent only if earlier answers go one way (added: the top of the range).
        basis: how the requests were counted, in words.
        extra_tokens: by request id, input tokens the request will carry beyond its rendered text
            (text that earlier calls will write, such as the candidate a judge reads).
        extra_basis: how ``extra_tokens`` was estimated.
        notes: more to know (other bounds, retries not counted).
    """

    role: str
    backend: Any
    output: Path | None = None
    certain: list[Any] = field(default_factory=list)
    possible: list[Any] = field(default_factory=list)
    basis: str = ""
    extra_tokens: dict[str, int] = field(default_factory=dict)
    extra_basis: str = ""
    notes: list[str] = field(default_factory=list)


@dataclass
class StagePlan:
    """What a step's plan hook returns: its calls, and the question files it will write as far as
    they are known (``{path: (certain questions, possible questions)}``), for the later steps'
    plans."""

    calls: list[PlannedCalls] = field(default_factory=list)
    questions: dict[str, tuple[list[Any], list[Any]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


#: question files a plan hook may read before they exist: ``{path: (certain, possible)}``
Projected = dict[str, tuple[list[Any], list[Any]]]


def planned_questions(path: str | Path, projected: Projected) -> tuple[list[Any], list[Any]]:
    """The questions of a question file for a plan: ``(certain, possible)`` as an earlier step
    would write it, else the file as it is (all certain), else none."""
    if str(path) in projected:
        return projected[str(path)]
    if path and Path(path).is_file():
        from mede2_plugin.core.questions import read_questions

        return read_questions(path), []
    return [], []


def no_models(config: Any) -> list[dict[str, Any]]:
    return []


@dataclass(frozen=True)
class Step:
    """One step of a stage, as ``mede2 run`` drives it; every callable takes the step's config.

    Attributes:
        name: the step's name (``--from``, ``--force``, state and manifest keys).
        title: one line saying what it does.
        run: runs it (resumably) and reports; also gets a function printing one line for the user.
        inputs: what decides its outputs (its fingerprint).
        outputs: the files and folders it owns.
        models: the roles it calls, for the manifest (``{"role", "backend", "model", "sampling"}``,
            and ``api_key_env`` when the role cannot call without that variable).
        plan: the calls it would make, rendered from its inputs, none sent (``mede2 run --plan``);
            also gets the question files earlier steps will write (:data:`Projected`). None: no
            model calls.
    """

    name: str
    title: str
    run: Callable[[Any, Callable[[str], None]], StageResult]
    inputs: Callable[[Any], StageInputs]
    outputs: Callable[[Any], list[Path]]
    models: Callable[[Any], list[dict[str, Any]]] = no_models
    plan: Callable[[Any, Projected], StagePlan] | None = None


def role_entry(role: str, backend: Any, **sampling: Any) -> dict[str, Any] | None:
    """A manifest entry for one role a step calls (None when the role is not set)."""
    if backend is None:
        return None
    entry = {"role": role, "backend": backend.backend, "model": backend.model,
             "simulated": (backend.base_url or "").startswith("http://127.0.0.1") and backend.model.startswith("simulated")}
    if backend.base_url and not entry["simulated"]:
        entry["base_url"] = backend.base_url
    key_env = backend.required_api_key() if hasattr(backend, "required_api_key") else None
    if key_env:
        entry["api_key_env"] = key_env  # the variable's name, never its value
    entry["sampling"] = {k: v for k, v in sampling.items() if v is not None}
    return entry


#: BackendConfig fields that change pacing or price, never an answer: left out of fingerprints
NON_OUTPUT_FIELDS = ("concurrency", "rpm", "tpm", "max_retries", "timeout_s", "retry_initial_s", "retry_max_s",
                     "budget_usd", "cache_dir", "progress", "prices", "api_key_env", "cache_lease_s", "batch_poll_s",
                     "batch_poll_max_s")


def fingerprint_settings(config: Any) -> Any:
    """A config as plain data for a fingerprint: every backend (a dataclass with a ``model`` and a
    ``backend``) without the fields that only change pacing or price."""
    from mede2_plugin.core.settings import to_plain

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            if "backend" in value and "model" in value and isinstance(value.get("model"), str):
                return {k: strip(v) for k, v in value.items() if k not in NON_OUTPUT_FIELDS}
            return {k: strip(v) for k, v in value.items()}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(to_plain(config))


def templates_in(settings: Any) -> list[str]:
    """Every ``*.j2`` template named anywhere in a plain settings tree."""
    if isinstance(settings, dict):
        return [name for value in settings.values() for name in templates_in(value)]
    if isinstance(settings, list):
        return [name for value in settings for name in templates_in(value)]
    return [settings] if isinstance(settings, str) and settings.endswith(".j2") else []
