"""Run every signal plug-in on one decoded upload and gather one JSON-able ``signals`` object.

:class:`SignalSuite` is built once per process from the plug-in manager and the settings, then
called per upload from any thread. Each plug-in is timed; one that raises (a broken
third-party plug-in) is reported under ``plugins`` with its error and its signal left empty,
so one bad plug-in cannot take scanning down with it. The object it returns::

    ai_evidence   [{source, detail}, ...]     every provenance check's evidence, in order
    <check name>  {...}                       each provenance check's report (c2pa, xmp, ...)
    <signal>      0.0-1.0 or null             each classifier signal's score (nudity)
    classifiers   {model: {signal, score, ...detail}}
    plugins       [{name, kind, version, ms, error}]
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from typing import Any

from dignity.errors import BadRequest
from dignity.media import Media
from dignity.settings import Settings
from dignity.signals.base import (
    EVIDENCE_SOURCES,
    Classifier,
    ClassifierReport,
    ProvenanceCheck,
    ProvenanceReport,
)

_NAME = re.compile(r"\A[a-z][a-z0-9_]{0,31}\Z")
# Keys of the signals object that belong to the runner, not to any plug-in.
RESERVED = frozenset({"ai_evidence", "classifiers", "plugins", "derivative_of"})


class SignalConfigError(BadRequest):
    """The signal plug-ins cannot be set up as configured (a missing extra, a name clash)."""

    codes = ("config.signals",)


class SignalSuite:
    def __init__(
        self, checks: Sequence[ProvenanceCheck], classifiers: Sequence[Classifier]
    ) -> None:
        seen: set[str] = set()
        for name in [c.name for c in checks] + [c.signal for c in classifiers]:
            if not _NAME.match(name) or name in RESERVED:
                raise SignalConfigError(f"signal plug-in name {name!r} is not allowed")
        for name in [c.name for c in checks]:
            if name in seen:
                raise SignalConfigError(f"two provenance checks are both named {name!r}")
            seen.add(name)
        clash = seen & {c.signal for c in classifiers}
        if clash:
            raise SignalConfigError(f"signal names used twice: {sorted(clash)}")
        self.checks = tuple(checks)
        self.classifiers = tuple(classifiers)

    @classmethod
    def from_settings(cls, settings: Settings, *, entry_points: bool = True) -> SignalSuite:
        from dignity.signals.hooks import plugin_manager

        pm = plugin_manager(entry_points=entry_points)
        checks = _flatten(pm.hook.dignity_provenance_checks(settings=settings))
        classifiers = _flatten(pm.hook.dignity_classifiers(settings=settings))
        off = {name.strip().lower() for name in settings.signals_disabled}
        known = {c.name for c in checks} | {n for c in classifiers for n in (c.name, c.signal)}
        if off - known:
            from dignity.settings import config_error

            # A typo ("watermak") would otherwise leave the plug-in running, silently.
            raise config_error(
                "signals_disabled",
                f"no signal plug-in named {', '.join(sorted(off - known))} "
                f"(installed: {', '.join(sorted(known))})",
            )
        checks = [c for c in checks if c.name not in off]
        classifiers = [c for c in classifiers if c.name not in off and c.signal not in off]
        wanted = settings.nudity_classifier
        if wanted == "none":
            classifiers = [c for c in classifiers if c.signal != "nudity"]
        elif not any(c.name == wanted for c in classifiers if c.signal == "nudity"):
            hint = " (pip install 'dignity[nudenet]')" if wanted == "nudenet" else ""
            raise SignalConfigError(
                f"DIGNITY_NUDITY_CLASSIFIER={wanted} but that classifier is not available{hint}"
            )
        else:
            classifiers = [c for c in classifiers if c.signal != "nudity" or c.name == wanted]
        return cls(checks, classifiers)

    def namespaces(self) -> set[str]:
        """The top-level names this suite reports under (for validating policy facts)."""
        return {c.name for c in self.checks} | {c.signal for c in self.classifiers}

    def describe(self) -> list[dict[str, str]]:
        return [
            {"name": c.name, "kind": "provenance", "version": c.version} for c in self.checks
        ] + [
            {"name": c.name, "kind": "classifier", "signal": c.signal, "version": c.version}
            for c in self.classifiers
        ]

    def run(self, media: Media) -> dict[str, Any]:
        evidence: list[dict[str, str]] = []
        out: dict[str, Any] = {"ai_evidence": evidence}
        plugins: list[dict[str, Any]] = []
        classifiers: dict[str, Any] = {}
        for check in self.checks:
            started = time.perf_counter()
            error = None
            try:
                report = check.check(media)
                if not isinstance(report, ProvenanceReport):
                    raise TypeError(f"check() returned {type(report).__name__}")
                out[check.name] = report.data
                for item in report.evidence:
                    if item.source not in EVIDENCE_SOURCES:
                        raise ValueError(f"evidence source {item.source!r} is not known")
                    evidence.append(item.to_dict())
            except Exception as exc:  # a broken plug-in must not stop the scan
                error = f"{type(exc).__name__}: {exc}"
                out[check.name] = None
            plugins.append(plugin_timing(check.name, "provenance", check.version, started, error))
        for clf in self.classifiers:
            started = time.perf_counter()
            error = None
            try:
                got = clf.classify(media)
                if not isinstance(got, ClassifierReport):
                    raise TypeError(f"classify() returned {type(got).__name__}")
                score = _score(got.score)
                classifiers[clf.name] = {"signal": clf.signal, "score": score, **got.detail}
                prior = out.get(clf.signal)
                # Two models on one signal: the more cautious (higher) score stands.
                if score is not None and (prior is None or score > prior):
                    out[clf.signal] = score
                else:
                    out.setdefault(clf.signal, prior)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                out.setdefault(clf.signal, None)
            plugins.append(plugin_timing(clf.name, "classifier", clf.version, started, error))
        out["classifiers"] = classifiers
        out["plugins"] = plugins
        return out


def _score(value: float | None) -> float | None:
    if value is None:
        return None
    score = float(value)
    if not 0.0 <= score <= 1.0:  # also refuses NaN
        raise ValueError(f"score {value!r} is outside [0, 1]")
    return round(score, 4)


def plugin_timing(
    name: str, kind: str, version: str, started: float, error: str | None
) -> dict[str, Any]:
    return {
        "name": name,
        "kind": kind,
        "version": version,
        "ms": round((time.perf_counter() - started) * 1000, 3),
        "error": error,
    }


def _flatten(results: Iterable[Iterable[Any]]) -> list[Any]:
    return [item for group in results for item in group]
