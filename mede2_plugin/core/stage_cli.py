"""Command-line plumbing of every stage command (``mede2 curate|distill|rollout|judge|pairs|mmrp|eval``).

Each command loads one root config dataclass (:mod:`mede2_plugin.core.settings`): its defaults,
then ``-c FILE.yaml`` (the fields at the top level, or under the command's section, so one
pipeline file serves every stage), then ``--set key.path=value``, then the command's flags. Every
flag is a shortcut for one key path, and its type, help and default come from the dataclass
field it sets (:class:`Flag`); backend flags are generated from the backend dataclass's own fields
(:class:`BackendFlags`). Every command also takes ``--prompt NAME=PATH`` (your own prompt
template, :mod:`mede2_plugin.core.prompts`) and ``--allow-outside-media`` (images outside the
data folders, :mod:`mede2_plugin.core.media`).

Step-wise commands (``curate``, ``distill``) run one step, all steps or ``report`` through
:func:`run_stage_command`, print the counts table, and exit 1 while any item is pending (a failed
or missing call).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:  # imported lazily: building the parser stays light
    from mede2_plugin.core.steps import StepReport

UNSET = object()
_SPECS = "_mede2_override_specs"  # parser default holding the flags' (dest, key, kind)


# -- the dataclass fields behind the flags ------------------------------------------------------

def strip_optional(kind: Any) -> Any:
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return kind


def field_docs(cls: type) -> dict[str, str]:
    """``{field: text}`` from the ``Attributes:`` sections of ``cls``'s docstrings (its bases' too)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        text = klass.__doc__ or ""
        if "Attributes:" not in text:
            continue
        name = None
        for line in text.split("Attributes:", 1)[1].splitlines():
            match = re.match(r"^\s{4,8}(\w+): (.*)$", line)
            if match:
                name, docs[match.group(1)] = match.group(1), match.group(2).strip()
            elif name and line.strip():
                docs[name] += " " + line.strip()
            elif not line.strip() and name:
                name = None
    return docs


def _field_default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return field.default_factory()  # type: ignore[misc]
    return None


def field_at(cls: type, key: str) -> tuple[Any, Any, str]:
    """``(type, default, help text)`` of the field at ``key`` (``a.b.c``) of dataclass ``cls``."""
    kind: Any = cls
    default: Any = None
    doc = ""
    for part in key.split("."):
        owner = strip_optional(kind)
        if not (isinstance(owner, type) and dataclasses.is_dataclass(owner)):
            raise KeyError(f"{key}: {part!r} is not inside a dataclass")
        fields = {f.name: f for f in dataclasses.fields(owner)}
        if part not in fields:
            raise KeyError(f"{key}: {owner.__name__} has no field {part!r}")
        kind = typing.get_type_hints(owner)[part]
        default = _field_default(fields[part]) if default is None else getattr(default, part, None)
        if default is None and dataclasses.is_dataclass(strip_optional(kind)):
            defaults = fields[part].metadata.get("defaults") or {}
            default = _DefaultsView(strip_optional(kind), defaults)
        doc = field_docs(owner).get(part, "")
    if isinstance(default, _DefaultsView):
        default = None
    return kind, default, doc


class _DefaultsView:
    """The defaults of a dataclass field that is None until given (its fields' own defaults)."""

    def __init__(self, cls: type, given: dict[str, Any]) -> None:
        self.values = {f.name: given.get(f.name, _field_default(f)) for f in dataclasses.fields(cls)}

    def __getattr__(self, name: str) -> Any:
        return self.__dict__["values"].get(name)


def _shown(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def first_sentence(text: str) -> str:
    return re.split(r"(?<=[.;])\s", text, maxsplit=1)[0].rstrip(".;")


@dataclass(frozen=True)
class Flag:
    """A command-line shortcut for one key path of the command's config.

    Attributes:
        names: the option strings (``("-o", "--output-dir")``).
        key: the key path it sets (``rollout.num_candidates``).
        value: a constant it sets (a flag without argument, e.g. ``--no-embed-images`` sets False);
            a ``bool`` field without ``value`` gets a flag that sets True.
        choices: the values it accepts.
        help: the help text (default: the field's documentation, with its default).
        bare: the value of the flag given without its argument (``--drop-flagged`` alone: ``auto``).
        also: further key paths set to the same value.
    """

    names: tuple[str, ...]
    key: str
    value: Any = UNSET
    choices: tuple[Any, ...] | None = None
    help: str | None = None
    bare: Any = UNSET
    also: tuple[str, ...] = ()


def flag(*names: str, key: str, value: Any = UNSET, choices: Sequence[Any] | None = None,
         help: str | None = None, bare: Any = UNSET, also: Sequence[str] = ()) -> Flag:  # noqa: A002
    return Flag(tuple(names), key, value, tuple(choices) if choices else None, help, bare, tuple(also))


def add_flags(parser: argparse.ArgumentParser | Any, root: type, flags: Sequence[Flag]) -> None:
    """Add ``flags`` (shortcuts for key paths of dataclass ``root``) to a parser or argument group."""
    specs = _specs(parser)
    for item in flags:
        kind, default, doc = field_at(root, item.key)
        kind = strip_optional(kind)
        text = (item.help or doc).rstrip(".")
        dest = f"_flag_{len(specs)}"
        options: dict[str, Any] = {"dest": dest, "default": None}
        if item.value is not UNSET or kind is bool:
            constant = True if item.value is UNSET else item.value
            options.update(action="store_const", const=constant)
        else:
            if typing.get_origin(kind) is list:
                (inner,) = typing.get_args(kind) or (str,)
                options.update(nargs="+", type=strip_optional(inner) if strip_optional(inner) in (int, float) else str)
            else:
                options["type"] = kind if kind in (int, float) else str
            if item.choices:
                options["choices"] = item.choices
            else:
                options["metavar"] = item.key.rsplit(".", 1)[-1].upper()
            if item.bare is not UNSET:
                options.update(nargs="?", const=item.bare)
            if default not in (None, "", [], {}):
                text += f" (default: {_shown(default)})"
        parser.add_argument(*item.names, help=f"{text} [{', '.join((item.key, *item.also))}]".strip(), **options)
        specs += [(dest, key, "value") for key in (item.key, *item.also)]


@dataclass(frozen=True)
class BackendFlags:
    """The flags of one backend of the command's config, generated from the backend dataclass.

    ``--PREFIX-FIELD`` sets ``KEY.FIELD`` for every plain field (a ``_s`` unit suffix is dropped:
    ``timeout_s`` -> ``--PREFIX-timeout``; a boolean that defaults to True gives
    ``--PREFIX-no-FIELD``), ``--PREFIX-engine-arg K=V`` sets ``KEY.engine_args.K`` and
    ``--PREFIX-config YAML`` (without a prefix ``--backend-config``) the whole backend (the other flags
    then change it).

    Attributes:
        key: the key path of the backend in the config (``judge_backend``).
        prefix: the flags' prefix (``judge``); empty for ``--model``, ``--backend``, ...
        role: what the backend plays, for the help (``MMRP judge``).
        choices: accepted values by field name (``{"backend": ("openai", ...)}``).
    """

    key: str
    prefix: str = ""
    role: str = "model"
    choices: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)

    def option(self, name: str) -> str:
        return f"--{self.prefix}-{name}" if self.prefix else f"--{name}"


def add_backend_flags(parser: argparse.ArgumentParser, root: type, backend: BackendFlags) -> None:
    """Add the flags of ``backend`` (a key path of ``root`` holding a backend dataclass)."""
    specs = _specs(parser)
    kind, _, doc = field_at(root, backend.key)
    cls = strip_optional(kind)
    group = parser.add_argument_group(f"{backend.role} backend", first_sentence(doc) or None)
    dest = f"_flag_{len(specs)}"
    group.add_argument(backend.option("config") if backend.prefix else "--backend-config", dest=dest, metavar="YAML",
                       default=None,
                       help=f"{cls.__name__} YAML file; the flags below change it [{backend.key}]")
    specs.append((dest, backend.key, "yaml"))
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        plain = strip_optional(hints[field.name])
        if plain not in (str, int, float, bool):
            continue
        name = re.sub(r"_s$", "", field.name).replace("_", "-")
        text = first_sentence(docs.get(field.name, ""))
        default = _field_default(field)
        if plain is bool:
            names = (backend.option(f"no-{name}"),) if default else (backend.option(name),)
            add_flags(group, root, [Flag(names, f"{backend.key}.{field.name}", not default, help=text)])
            continue
        add_flags(group, root, [Flag((backend.option(name),), f"{backend.key}.{field.name}",
                                     choices=backend.choices.get(field.name), help=text)])
    if "engine_args" in hints:
        dest = f"_flag_{len(specs)}"
        group.add_argument(backend.option("engine-arg"), dest=dest, action="append", metavar="KEY=VALUE",
                           default=None, help=f"{first_sentence(docs.get('engine_args', ''))}; repeatable, "
                                              f"VALUE read as JSON when it is [{backend.key}.engine_args]")
        specs.append((dest, f"{backend.key}.engine_args", "mapping"))


def _specs(parser: Any) -> list[tuple[str, str, str]]:
    """The flag list of a parser (argument groups share their parser's)."""
    owner = getattr(parser, "_mede2_parser", parser)
    specs = owner.get_default(_SPECS)
    if specs is None:
        specs = []
        owner.set_defaults(**{_SPECS: specs})
    return specs


def add_config_arguments(parser: argparse.ArgumentParser, config_help: str, set_example: str,
                         media_key: str | None = "allow_outside_media") -> None:
    """``-c/--config`` plus :func:`add_override_arguments`."""
    parser.add_argument("-c", "--config", help=config_help)
    add_override_arguments(parser, set_example, media_key)


def add_override_arguments(parser: argparse.ArgumentParser, set_example: str,
                           media_key: str | None = "allow_outside_media") -> None:
    """``--set``, ``--prompt`` and ``--allow-outside-media`` (setting ``media_key``, when given)."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help=f"override one setting, value read as YAML (repeatable), e.g. {set_example}")
    parser.add_argument("--prompt", dest="prompts", action="append", default=[], metavar="NAME=PATH",
                        help="render your own jinja file instead of the packaged prompt NAME (e.g. "
                             "mmrp_judge=my_judge.j2; names as in templates/prompts/, see `mede2 resources`); "
                             "repeatable [prompts.NAME]")
    if media_key:
        parser.add_argument("--allow-outside-media", dest="allow_outside_media", action="store_true",
                            help="read images outside the data folders too (absolute paths, file:// URIs, '..'); "
                                 f"off, such an image fails its record with the reason [{media_key}]")
        parser.set_defaults(_mede2_media_key=media_key)


def overrides_from_args(args: argparse.Namespace) -> list[str]:
    """``--set`` overrides, then ``key.path=value`` for every flag given, in the order added."""
    overrides = list(getattr(args, "overrides", []) or [])
    for item in getattr(args, "prompts", []) or []:
        name, sep, path = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--prompt {item!r}: expected NAME=PATH")
        stem = re.sub(r"^prompts/|\.j2$", "", name.strip())
        overrides.append(f"prompts.{stem}={json.dumps(path)}")
    if getattr(args, "allow_outside_media", False):
        overrides.append(f"{args._mede2_media_key}=true")
    for dest, key, kind in getattr(args, _SPECS, None) or []:
        value = getattr(args, dest, None)
        if value is None:
            continue
        if kind == "yaml":
            value = _backend_file(value)
        if kind == "mapping":
            for item in value:
                name, sep, text = item.partition("=")
                if not sep:
                    raise ValueError(f"engine argument {item!r}: expected KEY=VALUE")
                overrides.append(f"{key}.{name.strip()}={json.dumps(_json_or_text(text))}")
            continue
        # a JSON value is a YAML value: paths with ':' or '#' survive
        overrides.append(f"{key}={json.dumps(value)}")
    return overrides


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _backend_file(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle) or {}
    except OSError as err:
        raise ValueError(f"{path}: cannot read the backend file ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({err})") from None
    if isinstance(data, dict) and isinstance(data.get("backend_config"), dict):
        data = data["backend_config"]
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of backend fields")
    return data


# -- step-wise commands -----------------------------------------------------------------------------

def add_stage_arguments(parser: argparse.ArgumentParser, actions: Sequence[str], epilog: str,
                        config_help: str, set_example: str) -> None:
    """The ``action`` choice plus :func:`add_config_arguments`."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = epilog
    parser.add_argument("action", choices=actions, help="the step to run (see below)")
    add_config_arguments(parser, config_help, set_example)


def run_stage_command(stage: str, args: argparse.Namespace, load_settings: Callable[[argparse.Namespace], Any],
                      run: Callable[[Any, str], list[StepReport]],
                      describe: Callable[[list[StepReport]], None] | None = None) -> int:
    """Load the settings, run ``args.action`` and print its counts table; the command's exit code.

    Args:
        stage: the command's name, for messages (``curate``).
        args: the parsed arguments (``action`` among them).
        load_settings: the settings from the arguments (raises ``ValueError`` on bad settings).
        run: the reports of ``action`` run with those settings (``config`` is handled here).
        describe: prints anything more after the table (e.g. the dataset written).

    Returns 2 on bad settings or a failed step, 1 while items are pending, else 0.
    """
    from mede2_plugin.core.prompts import prompt_overrides
    from mede2_plugin.core.settings import dump_config
    from mede2_plugin.core.steps import format_table

    try:
        config = load_settings(args)
    except ValueError as err:
        print(f"mede2 {stage}: {err}", file=sys.stderr)
        return 2
    if args.action == "config":
        print(dump_config(config), end="")
        return 0
    try:
        with prompt_overrides(getattr(config, "prompts", None)):
            reports = run(config, args.action)
    except (ValueError, OSError) as err:
        print(f"mede2 {stage} {args.action}: {err}", file=sys.stderr)
        return 2
    print(format_table(reports))
    print(f"report: {config.out / 'report.json'}")
    if describe is not None:
        describe(reports)
    pending = sum(r.pending for r in reports)
    if pending:
        print(f"{pending} item(s) pending (a call failed or is missing): run the same command again to retry",
              file=sys.stderr)
        return 1
    return 0
