"""Import hook that registers MedE2 into LLaMA-Factory in every process that imports it.

LLaMA-Factory 0.9.x has no plugin entry points, and ``llamafactory-cli train`` re-executes itself
under torchrun, whose workers import only LLaMA-Factory. So registration must happen inside
LLaMA-Factory's own import: ``mede2_plugin_autoload.pth`` (installed into site-packages) imports
this module at interpreter start-up; it adds one finder to ``sys.meta_path`` and nothing else.
When ``llamafactory.data.template`` or ``llamafactory.data.converter`` finishes executing, the
finder calls our registration for that module (a ``mede2_<base>`` template for every template
LLaMA-Factory registers; our dataset formats); when ``llamafactory.train.tuner`` does, it wraps
``run_exp`` so that torchrun workers exit cleanly (see ``llamafactory_ext.worker_exit``); when
``llamafactory.launcher`` does (only in the process ``llamafactory-cli`` starts), it wraps
``launch`` so that a train run whose DeepSpeed setting cannot work stops first with one clear line
(see ``llamafactory_ext.preflight``). A process that never imports LLaMA-Factory pays for reading
this file and one dictionary look-up per import.

Set ``MEDE2_NO_AUTOLOAD=1`` to switch the hook off; ``mede2_plugin.llamafactory_ext.register_all()``
registers by hand (for ``python -S`` or embedded interpreters that skip ``.pth`` files).
"""

import os
import sys

# No importlib.abc here: it pulls in importlib.resources and typing (~30 ms) at every start-up.
# The import system needs only the methods, not the base classes.

# LLaMA-Factory internals: the modules whose loading triggers our registration (see INTERNALS in
# llamafactory_ext/__init__.py; tests/test_llamafactory_hooks.py fails when one moves)
_TARGETS = {
    "llamafactory.data.template": "register_templates",
    "llamafactory.data.converter": "register_converters",
    "llamafactory.train.tuner": "guard_worker_exit",
    "llamafactory.launcher": "guard_launch",
}


class _Loader:
    """Runs the real loader, then our registration for that module."""

    def __init__(self, inner, hook):  # noqa: ANN001
        self._inner = inner
        self._hook = hook

    def create_module(self, spec):  # noqa: ANN001 - importlib protocol
        return self._inner.create_module(spec)

    def exec_module(self, module):  # noqa: ANN001 - importlib protocol
        self._inner.exec_module(module)
        from mede2_plugin import llamafactory_ext

        getattr(llamafactory_ext, self._hook)()

    def __getattr__(self, name):  # get_source, get_filename, ... for tracebacks and inspect
        return getattr(self._inner, name)


class _Finder:
    """Wraps the loader of the LLaMA-Factory modules in ``_TARGETS``; passes every other import on."""

    def find_spec(self, fullname, path, target=None):  # noqa: ANN001 - importlib protocol
        hook = _TARGETS.get(fullname)
        if hook is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _Loader(spec.loader, hook)
                return spec
        return None


def install():
    """Put the finder first on ``sys.meta_path`` once per process."""
    if os.environ.get("MEDE2_NO_AUTOLOAD") == "1":
        return
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


install()
