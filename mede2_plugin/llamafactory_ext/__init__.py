"""MedE2's LLaMA-Factory extension: chat templates, dataset formats, checks before a train run
starts, and a clean worker exit.

Called by the import hook in :mod:`mede2_plugin._autoload` when LLaMA-Factory loads its registry
modules; safe to call again by hand (registration is idempotent).
"""

from __future__ import annotations

FORMAT_NAMES = ("mede2_sft", "mede2_pref", "mede2_judged")


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
