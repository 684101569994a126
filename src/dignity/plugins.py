"""The pluggy markers every dignity plug-in uses, and where installed plug-ins are found.

A plug-in is a module or object with ``@hookimpl`` functions; a third-party package makes itself
known through the ``dignity.signals`` entry-point group (``[project.entry-points]`` in its
pyproject). Each part of the core that takes plug-ins declares its own hook specifications next
to what it defines and builds its own manager with :func:`manager` (hash signal types in
:mod:`dignity.hashing.registry`, classifiers and provenance checks in
:mod:`dignity.signals.hooks`), so this module imports nothing of dignity's and every layer can
depend on it. The built-ins register through the very same hooks as third-party plug-ins.
"""

from __future__ import annotations

import pluggy

PROJECT = "dignity"
ENTRY_POINT_GROUP = "dignity.signals"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


def manager(
    spec: type, builtin: object, *, name: str, entry_points: bool = True
) -> pluggy.PluginManager:
    """A manager for the hooks of ``spec`` with ``builtin`` registered first and then (unless
    told not to) every installed plug-in. A plug-in may implement hooks of several parts; the
    hooks a manager has no spec for are simply never called by it."""
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(spec)
    pm.register(builtin, name=name)
    if entry_points:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    return pm
