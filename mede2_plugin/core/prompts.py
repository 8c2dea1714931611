"""Every prompt of the package is a jinja2 file under ``templates/``; this renders them.

Templates render in jinja2's :class:`~jinja2.sandbox.SandboxedEnvironment` (no attribute access to
Python internals), so a prompt file a user supplies is as safe to render as the packaged ones.

**Your own prompts.** Any template can be replaced by a file of yours: a stage config's
``prompts: {NAME: PATH}`` (``mede2 run``: in the pipeline file, or a stage's section), or
``--prompt NAME=PATH`` on the command line. ``NAME`` is the template's name under
``templates/prompts/`` without ``.j2`` (``mmrp_judge``, ``system``, ...), or its full name
(``prompts/mmrp_judge.j2``). The file gets the same variables as the packaged template (and can
``{% include %}`` packaged ones). Its content hash is what manifests, reports and stage
fingerprints record, so a change of prompt redoes what depends on it. The copies ``mede2
resources`` writes are a good start: edit one and point ``--prompt`` at it.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from mede2_plugin.core.resources import templates_dir

_overrides: dict[str, Path] = {}  # template name -> the user's file, while a stage runs


def template_name(name: str) -> str:
    """``mmrp_judge`` -> ``prompts/mmrp_judge.j2``; a full template name is kept."""
    return name if "/" in name or name.endswith((".j2", ".jinja")) else f"prompts/{name}.j2"


def check_overrides(prompts: Mapping[str, str]) -> dict[str, Path]:
    """``{template name: file}`` of a ``prompts`` setting; unknown names and missing files raise."""
    checked = {}
    for name, path in prompts.items():
        full = template_name(str(name))
        if not (templates_dir() / full).is_file():
            known = sorted(p.stem for p in (templates_dir() / "prompts").glob("*.j2"))
            raise ValueError(f"prompts: no packaged template {name!r} to replace; known: {', '.join(known)}")
        file = Path(path).expanduser()
        if not file.is_file():
            raise FileNotFoundError(f"prompts.{name}: {file} is not a file")
        checked[full] = file.resolve()
    return checked


@contextlib.contextmanager
def prompt_overrides(prompts: Mapping[str, str] | None) -> Iterator[None]:
    """Render the user's files of ``prompts`` (``{NAME: PATH}``) instead of the packaged ones
    inside the block (nested blocks add to the outer ones)."""
    global _overrides
    previous = _overrides
    _overrides = {**previous, **check_overrides(prompts or {})}
    environment().cache.clear()
    try:
        yield
    finally:
        _overrides = previous
        environment().cache.clear()


class _Loader(jinja2.BaseLoader):
    """The packaged templates, each replaced by the user's file while an override is active."""

    def __init__(self) -> None:
        self.packaged = jinja2.FileSystemLoader(str(templates_dir()))

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str | None, Callable[[], bool]]:
        user = _overrides.get(template)
        if user is None:
            return self.packaged.get_source(environment, template)
        mtime = user.stat().st_mtime_ns
        return user.read_text(encoding="utf-8"), str(user), lambda: user.stat().st_mtime_ns == mtime

    def list_templates(self) -> list[str]:
        return self.packaged.list_templates()


@lru_cache(maxsize=1)
def environment() -> SandboxedEnvironment:
    return SandboxedEnvironment(loader=_Loader(), undefined=jinja2.StrictUndefined, keep_trailing_newline=False,
                                autoescape=False, auto_reload=True)


def render(name: str, **variables: Any) -> str:
    """Render ``templates/<name>`` (e.g. ``prompts/judge_mmrp.j2``) with the given variables."""
    return environment().get_template(name).render(**variables)


def template_source(name: str) -> str:
    """The raw text of a template: the user's file when it is replaced, else the packaged one."""
    user = _overrides.get(name)
    return (user or templates_dir() / name).read_text(encoding="utf-8")


def template_hash(name: str) -> str:
    """Content hash of a template as it renders now (a user's file when replaced), recorded in
    manifests and fingerprints so prompt changes are visible."""
    return hashlib.sha256(template_source(name).encode("utf-8")).hexdigest()[:16]


def template_hashes(names: list[str], prompts: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{name: hash}`` of ``names`` with ``prompts`` (``{NAME: PATH}``) replacing packaged ones."""
    with prompt_overrides(prompts):
        return {name: template_hash(name) for name in sorted(set(names))}
