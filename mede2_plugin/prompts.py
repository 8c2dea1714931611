"""Every prompt of the package is a jinja2 file under ``templates/``; this renders them."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any

import jinja2

from mede2_plugin.resources import templates_dir


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        autoescape=False,
    )


def render(name: str, **variables: Any) -> str:
    """Render ``templates/<name>`` (e.g. ``prompts/judge_mmrp.j2``) with the given variables."""
    return environment().get_template(name).render(**variables)


def template_source(name: str) -> str:
    """Return the raw text of a template file."""
    return (templates_dir() / name).read_text(encoding="utf-8")


def template_hash(name: str) -> str:
    """Content hash of a template, recorded in manifests so prompt changes are visible."""
    return hashlib.sha256(template_source(name).encode("utf-8")).hexdigest()[:16]
