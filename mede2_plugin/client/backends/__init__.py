"""Backends behind one interface; see :mod:`mede2_plugin.client.backends.base`."""

from mede2_plugin.client.backends.base import (
    BACKENDS,
    Backend,
    BaseBackend,
    Completion,
    Sample,
    SharedBackend,
    create_backend,
)

__all__ = ["BACKENDS", "Backend", "BaseBackend", "Completion", "Sample", "SharedBackend", "create_backend"]
