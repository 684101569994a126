"""The pluggy hooks through which every signal plug-in, built-in or third-party, is found.

A plug-in is a module or object with ``@hookimpl`` functions (classifiers, provenance checks,
hash signal types); a third-party package makes itself known through the ``dignity.signals``
entry-point group (``[project.entry-points]`` in its pyproject). The built-ins in
:mod:`dignity.signals.builtin` are registered through the very same hooks, so they get no
privilege a third-party plug-in lacks.
"""

from __future__ import annotations

from collections.abc import Sequence

import pluggy

from dignity.hashing.registry import SignalType
from dignity.settings import Settings
from dignity.signals.base import Classifier, ProvenanceCheck

PROJECT = "dignity"
ENTRY_POINT_GROUP = "dignity.signals"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class SignalSpec:
    """Hook specifications. Each returns the plug-in's instances for these settings, or an
    empty list when it cannot run here (say, an optional dependency is missing)."""

    @hookspec
    def dignity_provenance_checks(self, settings: Settings) -> Sequence[ProvenanceCheck]:  # type: ignore[empty-body]
        """Provenance checks this plug-in provides."""

    @hookspec
    def dignity_classifiers(self, settings: Settings) -> Sequence[Classifier]:  # type: ignore[empty-body]
        """Classifiers this plug-in provides."""

    @hookspec
    def register_signal_types(self) -> Sequence[SignalType]:  # type: ignore[empty-body]
        """Hash signal types this plug-in provides (see :mod:`dignity.hashing.registry`)."""


def plugin_manager(*, entry_points: bool = True) -> pluggy.PluginManager:
    """A manager with the built-ins and (unless told not to) every installed plug-in."""
    from dignity.signals import builtin

    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(SignalSpec)
    pm.register(builtin, name="dignity.builtin")
    if entry_points:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    return pm
