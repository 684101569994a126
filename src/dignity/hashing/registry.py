"""Hash signal types: what each is, and the registry every part of dignity asks about them.

A :class:`SignalType` names a hash (``pdq``, ``md5``, ``sha256``, ``vpdq``, ``video_md5``),
the kinds of content it is computed from, its length in bytes and how its hex form is checked.
A :class:`DistanceSignalType` is matched by distance and also says how far apart two hashes are,
its default and largest bank threshold, and which index holds it; the others are matched
exactly. Types are found through the pluggy hook ``register_signal_types`` (declared here, with
the markers of :mod:`dignity.plugins`), and the built-ins register through it like any
third-party plug-in, as python-threatexchange's ``SignalType`` classes and datasette's default
plug-ins do.
Hashes are bytes inside dignity (the index and the exact stores are keyed by bytes); lowercase
hex, as python-threatexchange writes it, is only their form at the edges (JSON, database, CLI).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import pluggy

from dignity.errors import HashError
from dignity.plugins import hookimpl, hookspec, manager

if TYPE_CHECKING:
    from dignity.matching.protocol import MatchIndex

_HEX = re.compile(r"\A[0-9a-fA-F]+\Z")
_NAME = re.compile(r"\A[a-z][a-z0-9_]{0,15}\Z")  # fits the entries.signal column


@runtime_checkable
class SignalType(Protocol):
    """A hash signal type. Implementations are immutable and safe to share between threads."""

    @property
    def name(self) -> str:
        """Lowercase identifier, as stored in the database and shown in JSON."""
        ...

    @property
    def content(self) -> frozenset[str]:
        """The kinds of content it is computed from: ``{"photo"}``, ``{"video"}``."""
        ...

    @property
    def byte_length(self) -> int:
        """Length of one hash in bytes (its hex form has twice as many digits)."""
        ...

    @property
    def matched_by_distance(self) -> bool:
        """True for a :class:`DistanceSignalType`; False: matched only when equal."""
        ...

    def normalize(self, value: str) -> str:
        """The lowercase hex form of ``value``; raises ``HashError`` (``hash.malformed``)."""
        ...


@runtime_checkable
class DistanceSignalType(SignalType, Protocol):
    """A hash matched by distance: near hashes are the same picture, edited."""

    @property
    def default_threshold(self) -> int:
        """The largest distance a new bank treats as a match."""
        ...

    @property
    def max_threshold(self) -> int:
        """The largest threshold a bank may set: beyond it, unrelated content matches."""
        ...

    def distance(self, a: bytes, b: bytes) -> int:
        """Distance between two hashes of ``byte_length`` bytes."""
        ...

    def new_index(self) -> MatchIndex | None:
        """An empty index for hashes of this type, or None for the match engine's own exact
        Hamming-distance index (the built-ins' choice: the index lives with the engine, which
        depends on this module, not the other way round)."""
        ...


@dataclass(frozen=True)
class HexDigest:
    """An exactly matched hash given as fixed-length hex (a cryptographic digest of the file)."""

    name: str
    content: frozenset[str]
    byte_length: int

    @property
    def matched_by_distance(self) -> bool:
        return False

    def normalize(self, value: str) -> str:
        val = value.strip()
        want = 2 * self.byte_length
        if len(val) != want or not _HEX.match(val):
            raise HashError(
                f"a {self.name} hash is {want} hex digits; got {val[:80]!r}",
                code="hash.malformed",
                signal=self.name,
            )
        return val.lower()


@dataclass(frozen=True)
class HammingHash(HexDigest):
    """A perceptual hash of ``byte_length * 8`` bits compared by Hamming distance."""

    default_threshold: int = 31
    max_threshold: int = 63
    index_factory: Callable[[], MatchIndex] | None = None

    @property
    def matched_by_distance(self) -> bool:
        return True

    def distance(self, a: bytes, b: bytes) -> int:
        return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()

    def new_index(self) -> MatchIndex | None:
        return None if self.index_factory is None else self.index_factory()


@dataclass(frozen=True)
class FrameSequence(HexDigest):
    """A video hash made of many frame hashes (vPDQ: one PDQ a second, with frame number,
    timestamp and quality). Its value is the SHA-256 (hex) of the frames' canonical text
    (:func:`dignity.video.formats.vpdq_digest`), so equal frames are one entry and the value
    fits the entries table; the frames themselves live beside the entry (``entry_frames``) and
    are matched by distance as ``frame_signal`` hashes, in that type's index. Matched exactly by
    its value, like a digest, and by its frames through ``MatchEngine.match_video``."""

    frame_signal: str = "pdq"

    @property
    def has_frames(self) -> bool:
        return True


def has_frames(signal_type: SignalType | None) -> bool:
    """True for a signal type whose entries carry frames (``vpdq``)."""
    return bool(getattr(signal_type, "has_frames", False))


PDQ = HammingHash("pdq", frozenset({"photo"}), 32, default_threshold=31, max_threshold=63)
MD5 = HexDigest("md5", frozenset({"photo", "video"}), 16)
SHA256 = HexDigest("sha256", frozenset({"photo", "video"}), 32)
# Video signals: vPDQ (HMA's and python-threatexchange's name for Meta's video PDQ) and the MD5
# of the video file's bytes under the name StopNCII and NCMEC use for it.
VPDQ = FrameSequence("vpdq", frozenset({"video"}), 32, frame_signal="pdq")
VIDEO_MD5 = HexDigest("video_md5", frozenset({"video"}), 16)
BUILTIN: tuple[SignalType, ...] = (PDQ, MD5, SHA256, VPDQ, VIDEO_MD5)


class SignalRegistry:
    """The signal types known to this process, in the order they were registered."""

    def __init__(self, types: Iterable[SignalType] = ()) -> None:
        self._types: dict[str, SignalType] = {}
        for t in types:
            self.register(t)

    def register(self, signal_type: SignalType) -> None:
        if not isinstance(signal_type, SignalType):
            raise TypeError(f"{signal_type!r} is not a SignalType")
        name = signal_type.name
        if not _NAME.match(name):
            raise ValueError(f"signal type name {name!r} must match {_NAME.pattern}")
        if name in self._types:
            raise ValueError(f"signal type {name!r} is registered twice")
        if signal_type.matched_by_distance and not isinstance(signal_type, DistanceSignalType):
            raise TypeError(f"{name} is matched by distance but lacks DistanceSignalType's parts")
        self._types[name] = signal_type

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __iter__(self) -> Iterator[SignalType]:
        return iter(self._types.values())

    def __len__(self) -> int:
        return len(self._types)

    def get(self, name: str) -> SignalType | None:
        return self._types.get(name)

    def names(self) -> list[str]:
        return list(self._types)

    def distance(self) -> list[DistanceSignalType]:
        return [t for t in self._types.values() if isinstance(t, DistanceSignalType)]

    def exact(self) -> list[SignalType]:
        return [t for t in self._types.values() if not t.matched_by_distance]

    def for_content(self, kind: str) -> list[SignalType]:
        return [t for t in self._types.values() if kind in t.content]

    def normalize(self, signal: str, value: str) -> tuple[str, str]:
        """Validate a (signal, hex value) pair and return it lowercased; raise ``HashError``."""
        sig = signal.strip().lower()
        found = self._types.get(sig)
        if found is None:
            raise HashError(
                f"unknown signal type {signal!r} (known: {', '.join(sorted(self._types))})",
                code="hash.unknown_signal",
                signal=signal,
            )
        return sig, found.normalize(value)

    @classmethod
    def from_plugins(cls, pm: pluggy.PluginManager) -> SignalRegistry:
        """Every type the plug-ins of ``pm`` register (built-ins first: pluggy calls the
        hooks registered last first, so the order is reversed)."""
        found: list[Sequence[SignalType]] = pm.hook.register_signal_types()
        return cls(t for types in reversed(found) for t in types)


class SignalTypeSpec:
    """The hook specification of signal-type plug-ins."""

    @hookspec
    def register_signal_types(self) -> Sequence[SignalType]:  # type: ignore[empty-body]
        """Hash signal types this plug-in provides."""


class _Builtin:
    """The built-in types, registered through the same hook as any plug-in's."""

    @hookimpl
    def register_signal_types(self) -> Sequence[SignalType]:
        return BUILTIN


def plugin_manager(*, entry_points: bool = True) -> pluggy.PluginManager:
    """A manager of signal-type plug-ins: the built-ins, then every installed plug-in."""
    return manager(
        SignalTypeSpec, _Builtin(), name="dignity.signal_types", entry_points=entry_points
    )


@functools.cache
def signal_types() -> SignalRegistry:
    """This process's registry: the built-ins and every installed plug-in's types."""
    return SignalRegistry.from_plugins(plugin_manager())
