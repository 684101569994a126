"""The pluggy hooks through which every classifier and provenance check, built-in or
third-party, is found (hash signal types have theirs in :mod:`dignity.hashing.registry`).

A plug-in is a module or object with ``@hookimpl`` functions (:mod:`dignity.plugins`); a
third-party package makes itself known through the ``dignity.signals`` entry-point group. The
built-ins in :mod:`dignity.signals.builtin` are registered through the very same hooks, so they
get no privilege a third-party plug-in lacks.
"""

from __future__ import annotations

from collections.abc import Sequence

import pluggy

from dignity.plugins import ENTRY_POINT_GROUP, PROJECT, hookimpl, hookspec, manager
from dignity.settings import Settings
from dignity.signals.base import Classifier, ProvenanceCheck


class SignalSpec:
    """Hook specifications. Each returns the plug-in's instances for these settings, or an
    empty list when it cannot run here (say, an optional dependency is missing)."""

    @hookspec
    def dignity_provenance_checks(self, settings: Settings) -> Sequence[ProvenanceCheck]:  # type: ignore[empty-body]
        """Provenance checks this plug-in provides."""

    @hookspec
    def dignity_classifiers(self, settings: Settings) -> Sequence[Classifier]:  # type: ignore[empty-body]
        """Classifiers this plug-in provides."""


def plugin_manager(*, entry_points: bool = True) -> pluggy.PluginManager:
    """A manager with the built-ins and (unless told not to) every installed plug-in."""
    from dignity.signals import builtin

    return manager(SignalSpec, builtin, name="dignity.builtin", entry_points=entry_points)


__all__ = ["ENTRY_POINT_GROUP", "PROJECT", "SignalSpec", "hookimpl", "hookspec", "plugin_manager"]
