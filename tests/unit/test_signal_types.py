"""The contract every registered hash signal type passes, built-in or third-party, and the
registry's own promises: found through the pluggy hook, built-ins first, views that follow it.

Each type found through ``register_signal_types`` (exactly as in production) must name itself
in the database's terms, accept its own hex in either case and refuse every wrong length and
non-hex digit, and, when matched by distance, measure 0 to itself, be symmetric, stay within
its bits, and make an index that finds what it was given.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pytest

from dignity.errors import HashError
from dignity.hashing.registry import (
    DistanceSignalType,
    HexDigest,
    SignalRegistry,
    SignalType,
    plugin_manager,
    signal_types,
)
from dignity.hashing.signals import DISTANCE_SIGNALS, SIGNAL_TYPES, normalize_hash
from dignity.plugins import hookimpl

REGISTRY = signal_types()


def _hex(t: SignalType, seed: int) -> str:
    return random.Random(seed).randbytes(t.byte_length).hex()


@pytest.mark.parametrize("t", list(REGISTRY), ids=lambda t: t.name)
def test_every_type_keeps_the_contract(t: SignalType) -> None:
    assert isinstance(t, SignalType)
    assert t.name == t.name.lower() and len(t.name) <= 16
    assert t.content and t.content <= {"photo", "video"}
    assert t.byte_length > 0
    value = _hex(t, 1)
    assert t.normalize(value.upper()) == value
    assert t.normalize(f"  {value}\n") == value
    for bad in (value[:-1], value + "0", "g" + value[1:], "", "0x" + value[2:]):
        with pytest.raises(HashError) as e:
            t.normalize(bad)
        assert e.value.code == "hash.malformed"
    assert t.matched_by_distance == isinstance(t, DistanceSignalType)


@pytest.mark.parametrize("t", REGISTRY.distance(), ids=lambda t: t.name)
def test_every_distance_type_measures_and_indexes(t: DistanceSignalType) -> None:
    a, b = (bytes.fromhex(_hex(t, s)) for s in (2, 3))
    assert t.distance(a, a) == 0
    assert t.distance(a, b) == t.distance(b, a)
    assert 0 < t.distance(a, b) <= 8 * t.byte_length
    assert 0 <= t.default_threshold <= t.max_threshold < 8 * t.byte_length
    from dignity.matching.index import MihIndex

    index = t.new_index() or MihIndex()  # None: the engine's own Hamming index
    rows = np.frombuffer(a + b, dtype=np.uint8).reshape(2, t.byte_length)
    index.add(np.asarray([7, 9], dtype=np.int64), rows, np.asarray([1, 2], dtype=np.int32))
    hits = index.search(rows[:1], 0)
    assert hits.ids.tolist() == [7] and hits.tags.tolist() == [1]


def test_builtins_register_through_the_hook_in_order() -> None:
    assert REGISTRY.names()[:5] == ["pdq", "md5", "sha256", "vpdq", "video_md5"]
    assert [t.name for t in REGISTRY.distance()] == ["pdq"]
    assert dict(SIGNAL_TYPES) == {
        "pdq": 64,
        "md5": 32,
        "sha256": 64,
        "vpdq": 64,
        "video_md5": 32,
    }
    assert "pdq" in DISTANCE_SIGNALS and "md5" not in DISTANCE_SIGNALS and 3 not in DISTANCE_SIGNALS
    assert "vpdq" not in DISTANCE_SIGNALS  # matched by its frames, through the engine
    with pytest.raises(HashError) as e:
        normalize_hash("tmk", "00")
    assert e.value.code == "hash.unknown_signal"
    assert "known: md5, pdq, sha256, video_md5, vpdq" in e.value.message


@dataclass(frozen=True)
class _Plugin:
    types: Sequence[SignalType]

    @hookimpl
    def register_signal_types(self) -> Sequence[SignalType]:
        return self.types


def test_a_third_party_type_plugs_in_after_the_builtins() -> None:
    pm = plugin_manager(entry_points=False)
    pm.register(_Plugin([HexDigest("tmk_md5", frozenset({"video"}), 16)]))
    registry = SignalRegistry.from_plugins(pm)
    assert registry.names() == ["pdq", "md5", "sha256", "vpdq", "video_md5", "tmk_md5"]
    assert [t.name for t in registry.for_content("video")] == [
        "md5",
        "sha256",
        "vpdq",
        "video_md5",
        "tmk_md5",
    ]
    assert registry.normalize("TMK_MD5", "AB" * 16) == ("tmk_md5", "ab" * 16)


def test_the_registry_refuses_clashes_and_non_types() -> None:
    pm = plugin_manager(entry_points=False)
    pm.register(_Plugin([HexDigest("md5", frozenset({"photo"}), 16)]))
    with pytest.raises(ValueError, match="registered twice"):
        SignalRegistry.from_plugins(pm)
    with pytest.raises(ValueError, match="must match"):
        SignalRegistry([HexDigest("Bad-Name", frozenset({"photo"}), 16)])
    with pytest.raises(TypeError):
        SignalRegistry(["md5"])  # type: ignore[list-item]
