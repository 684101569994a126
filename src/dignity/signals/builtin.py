"""The built-in signal plug-ins, registered through the same hooks as any third-party one.

Each check lives in its own module with a ``create(settings)`` factory; the imports happen
here, inside the hooks, so that a process that never scans (``dignity bank ...``) never loads
onnxruntime or the C2PA library.
"""

from __future__ import annotations

from collections.abc import Sequence

from dignity.hashing.registry import SignalType
from dignity.settings import Settings
from dignity.signals.base import Classifier, ProvenanceCheck
from dignity.signals.hooks import hookimpl


@hookimpl
def dignity_provenance_checks(settings: Settings) -> Sequence[ProvenanceCheck]:
    from dignity.signals import c2pa, generators, watermark, xmp

    checks: list[ProvenanceCheck] = []
    for module in (c2pa, xmp, generators, watermark):
        checks.extend(module.create(settings))
    return checks


@hookimpl
def dignity_classifiers(settings: Settings) -> Sequence[Classifier]:
    from dignity.signals import nudenet, nudity

    found: list[Classifier] = list(nudity.create(settings))
    if settings.nudity_classifier == "nudenet":
        found = list(nudenet.create(settings)) or found
    return found


@hookimpl
def register_signal_types() -> Sequence[SignalType]:
    from dignity.hashing.registry import BUILTIN

    return BUILTIN
