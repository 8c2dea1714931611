"""MedE2's LLaMA-Factory extension: chat templates, dataset formats, checks before a train run
starts, and a clean worker exit.

Called by the import hook in :mod:`mede2_plugin._autoload` when LLaMA-Factory loads its registry
modules; safe to call again by hand (registration is idempotent). These hooks are the only place
the package touches LLaMA-Factory's internals; :data:`INTERNALS` lists every one they rely on and
:func:`missing_internals` says, naming the plugin, which a LLaMA-Factory release no longer has
(``tests/test_llamafactory_hooks.py`` fails on any).
"""

from __future__ import annotations

import importlib

FORMAT_NAMES = ("mede2_sft", "mede2_pref", "mede2_judged")

#: hook -> the LLaMA-Factory internals it relies on (``module:attribute``, ``module`` alone for the
#: import hook's trigger modules)
INTERNALS: dict[str, tuple[str, ...]] = {
    "import hook (mede2_plugin._autoload)": ("llamafactory.data.template", "llamafactory.data.converter",
                                             "llamafactory.train.tuner", "llamafactory.launcher"),
    "mede2_<base> templates (templates.py)": ("llamafactory.data.template:TEMPLATES",
                                               "llamafactory.data.template:Template.default_system"),
    "chat templates (chat_template.py)": ("llamafactory.data.template:Template.format_user",
                                          "llamafactory.data.template:Template.encode_oneturn",
                                          "llamafactory.data.template:ReasoningTemplate",
                                          "llamafactory.data.template:Llama2Template",
                                          "llamafactory.data.mm_plugin:PLUGINS"),
    "dataset formats (converters.py)": ("llamafactory.data.converter:DATASET_CONVERTERS",
                                        "llamafactory.data.converter:DatasetConverter._find_medias"),
    "judged dataset (judged.py)": ("llamafactory.data.converter:align_dataset",
                                   "llamafactory.data.loader:align_dataset",
                                   "llamafactory.extras.logging:get_logger"),
    "clean worker exit (worker_exit.py)": ("llamafactory.train.tuner:run_exp", "llamafactory.launcher:__file__"),
    "DeepSpeed check (preflight.py)": ("llamafactory.launcher:launch",),
}


def _attribute(owner: object, name: str) -> object:
    """``owner.name``, or the field of that name of a dataclass (fields without defaults are no attributes)."""
    import dataclasses

    if dataclasses.is_dataclass(owner) and isinstance(owner, type):
        fields = {f.name: f for f in dataclasses.fields(owner)}
        if name in fields:
            return fields[name]
    return getattr(owner, name)


def missing_internals() -> list[str]:
    """One line per LLaMA-Factory internal of :data:`INTERNALS` this LLaMA-Factory lacks."""
    missing = []
    for hook, names in INTERNALS.items():
        for name in names:
            module_name, _, attributes = name.partition(":")
            try:
                target = importlib.import_module(module_name)
                for attribute in filter(None, attributes.split(".")):
                    target = _attribute(target, attribute)
            except (ImportError, AttributeError) as err:
                missing.append(f"mede2-plugin: its {hook} relies on LLaMA-Factory's {name}, which this "
                               f"LLaMA-Factory no longer has ({type(err).__name__}: {err})")
    return missing


def register_templates() -> None:
    """Register ``mede2_<base>`` for every LLaMA-Factory template (needs ``llamafactory.data.template``)."""
    from mede2_plugin.llamafactory_ext.templates import register

    register()


def register_converters() -> None:
    """Register the MedE2 dataset formats (needs ``llamafactory.data.converter``).

    When our converters module is itself being imported (it imports LLaMA-Factory's converter
    module, which fires the hook), it registers at the end of its own import instead.
    """
    import sys

    module = sys.modules.get("mede2_plugin.llamafactory_ext.converters")
    if module is not None and not hasattr(module, "register"):
        return
    from mede2_plugin.llamafactory_ext.converters import register

    register()


def guard_worker_exit() -> None:
    """Make torchrun workers of ``llamafactory-cli train`` exit cleanly after a successful run
    (needs ``llamafactory.train.tuner``); see :mod:`mede2_plugin.llamafactory_ext.worker_exit`."""
    import sys

    from mede2_plugin.llamafactory_ext.worker_exit import guard_run_exp

    tuner = sys.modules.get("llamafactory.train.tuner")
    if tuner is None:
        import llamafactory.train.tuner as tuner
    guard_run_exp(tuner)


def guard_launch() -> None:
    """Check ``llamafactory-cli train`` runs before they start (needs ``llamafactory.launcher``);
    see :mod:`mede2_plugin.llamafactory_ext.preflight`."""
    import sys

    from mede2_plugin.llamafactory_ext.preflight import guard_launch as guard

    launcher = sys.modules.get("llamafactory.launcher")
    if launcher is None:
        import llamafactory.launcher as launcher
    guard(launcher)


def register_all() -> None:
    """Register everything, importing LLaMA-Factory's registries first."""
    import llamafactory.data.converter  # noqa: F401 - the hook may already have registered
    import llamafactory.data.template  # noqa: F401

    register_templates()
    register_converters()
