"""The contract every signal plug-in passes, built-in or third-party, plus the runner's promises.

Each plug-in the suite would run (found through the pluggy hooks, exactly as in production) is
fed a corpus of awkward but valid media: every format, alpha, 16-bit, CMYK, 1x1, long strips,
a JPEG big enough to be decoded reduced, and files whose metadata is garbage or looks like a
marker it might key on. Every report must be the right type, JSON-serialisable, deterministic
and the same when called from several threads; evidence must use the contract's sources.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from dignity.hashing.signals import decode_upload
from dignity.media import Media
from dignity.samples import encode, landscape
from dignity.settings import Settings
from dignity.signals.base import (
    EVIDENCE_SOURCES,
    Classifier,
    ClassifierReport,
    Evidence,
    ProvenanceCheck,
    ProvenanceReport,
)
from dignity.signals.hooks import hookimpl, plugin_manager
from dignity.signals.runner import SignalConfigError, SignalSuite

SETTINGS = Settings()


def _png_with_text(chunks: dict[str, str]) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    buf = io.BytesIO()
    landscape(3, size=(64, 48)).save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def _corpus() -> dict[str, bytes]:
    photo = landscape(1, size=(320, 240))
    rgba = photo.convert("RGBA")
    rgba.putalpha(128)
    out = {
        "jpeg": encode(photo, "JPEG", quality=90),
        "png-rgba": encode(rgba, "PNG"),
        "webp": encode(photo, "WEBP", quality=80),
        "gif": encode(photo.convert("P"), "GIF"),
        "bmp": encode(photo, "BMP"),
        "tiff": encode(photo, "TIFF"),
        "gray": encode(photo.convert("L"), "PNG"),
        "cmyk-jpeg": encode(photo.convert("CMYK"), "JPEG"),
        "png-16bit": encode(
            Image.fromarray((np.arange(64 * 64, dtype=np.uint16) * 16).reshape(64, 64)), "PNG"
        ),
        "1x1": encode(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"),
        "strip": encode(Image.new("RGB", (3000, 3), (10, 200, 10)), "PNG"),
        "flat": encode(Image.new("RGB", (512, 512), (128, 128, 128)), "PNG"),
        "reduced-jpeg": encode(landscape(2, size=(2400, 1600)), "JPEG", quality=80),
        "garbage-text": _png_with_text(
            {"parameters": "\x00\ufffd" * 500, "prompt": "{not json", "XML:com.adobe.xmp": "<x"}
        ),
        "marker-bytes": encode(photo, "JPEG", comment=b"c2pa jumb jumd provenance <x:xmpmeta"),
    }
    exif = Image.Exif()
    exif[0x0131] = "\x00" * 10
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00\x00\xd8\x00"  # a lone surrogate in UTF-16
    out["bad-exif"] = encode(photo, "JPEG", exif=exif.tobytes())
    return out


CORPUS = _corpus()
MEDIA: dict[str, Media] = {name: decode_upload(data, SETTINGS) for name, data in CORPUS.items()}


def _suite() -> SignalSuite:
    return SignalSuite.from_settings(SETTINGS)


SUITE = _suite()
PLUGINS: list[ProvenanceCheck | Classifier] = [*SUITE.checks, *SUITE.classifiers]


def test_the_builtins_are_all_registered() -> None:
    names = {p.name for p in PLUGINS}
    assert {"c2pa", "xmp", "generator", "watermark", "opennsfw"} <= names
    assert MEDIA["reduced-jpeg"].reduced and not MEDIA["jpeg"].reduced


def _run(plugin: ProvenanceCheck | Classifier, media: Media) -> Any:
    if isinstance(plugin, Classifier) and hasattr(plugin, "classify"):
        return plugin.classify(media)
    return plugin.check(media)


@pytest.mark.parametrize("plugin", PLUGINS, ids=lambda p: p.name)
def test_plugin_contract(plugin: ProvenanceCheck | Classifier) -> None:
    assert re.fullmatch(r"[a-z][a-z0-9_]{0,31}", plugin.name)
    assert isinstance(plugin.version, str) and plugin.version
    for name, media in MEDIA.items():
        first = _run(plugin, media)
        again = _run(plugin, media)
        if isinstance(first, ClassifierReport):
            assert first.score is None or 0.0 <= first.score <= 1.0, name
            json.dumps(first.detail, allow_nan=False)
            assert first == again, f"{plugin.name} not deterministic on {name}"
        else:
            assert isinstance(first, ProvenanceReport), (plugin.name, name)
            json.dumps(first.data, allow_nan=False)
            for item in first.evidence:
                assert isinstance(item, Evidence) and item.source in EVIDENCE_SOURCES
                assert item.detail
            assert first.data == again.data and first.evidence == again.evidence, name
            # None of our corpus is AI-made: no plug-in may claim otherwise.
            assert not first.evidence, (plugin.name, name, first.evidence)


@pytest.mark.parametrize("plugin", PLUGINS, ids=lambda p: p.name)
def test_plugin_is_thread_safe(plugin: ProvenanceCheck | Classifier) -> None:
    items = list(MEDIA.values())[:8] * 2
    alone = [_run(plugin, m) for m in items]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda m: _run(plugin, m), items))
    assert [repr(x) for x in together] == [repr(x) for x in alone]


def test_runner_output_shape_and_timing() -> None:
    out = SUITE.run(MEDIA["jpeg"])
    assert out["ai_evidence"] == []
    assert out["c2pa"]["state"] == "none" and out["c2pa"]["digital_source_types"] == []
    assert isinstance(out["nudity"], float) and 0 <= out["nudity"] < 0.2
    assert out["classifiers"]["opennsfw"]["signal"] == "nudity"
    names = [p["name"] for p in out["plugins"]]
    assert names == [p.name for p in PLUGINS]
    for p in out["plugins"]:
        assert p["error"] is None and p["ms"] >= 0 and p["version"]
    json.dumps(out, allow_nan=False)


class _Broken:
    name = "broken"
    version = "0"

    def check(self, media: Media) -> ProvenanceReport:
        raise RuntimeError("boom")


class _Says:
    name = "third_party"
    version = "1.2"

    def check(self, media: Media) -> ProvenanceReport:
        return ProvenanceReport({"seen": media.width}, (Evidence("metadata", "third party"),))


class _Scores:
    name = "other_model"
    signal = "nudity"
    version = "1"

    def __init__(self, score: float | None) -> None:
        self.score = score

    def classify(self, media: Media) -> ClassifierReport:
        return ClassifierReport(self.score, {"why": "injected"})


class _ThirdPartyPlugin:
    """What an installed package registers through the ``dignity.signals`` entry point."""

    @hookimpl
    def dignity_provenance_checks(self, settings: Settings) -> Sequence[ProvenanceCheck]:
        return [_Says()]

    @hookimpl
    def dignity_classifiers(self, settings: Settings) -> Sequence[Classifier]:
        return []


def test_third_party_plugins_use_the_same_hooks() -> None:
    pm = plugin_manager(entry_points=False)
    pm.register(_ThirdPartyPlugin(), name="thirdparty")
    checks = [c for group in pm.hook.dignity_provenance_checks(settings=SETTINGS) for c in group]
    assert {"c2pa", "third_party"} <= {c.name for c in checks}
    out = SignalSuite([_Says()], []).run(MEDIA["png-rgba"])
    assert out["third_party"] == {"seen": 320}
    assert out["ai_evidence"] == [{"source": "metadata", "detail": "third party"}]


def test_a_broken_plugin_is_reported_not_fatal() -> None:
    out = SignalSuite([_Broken(), _Says()], [_Scores(1.5)]).run(MEDIA["jpeg"])
    assert out["broken"] is None and out["third_party"] == {"seen": 320}
    errors = {p["name"]: p["error"] for p in out["plugins"]}
    assert errors["broken"] == "RuntimeError: boom" and errors["third_party"] is None
    assert errors["other_model"].startswith("ValueError") and out["nudity"] is None


def test_two_models_on_one_signal_keep_the_higher_score() -> None:
    class Low(_Scores):
        name = "low_model"

    out = SignalSuite([], [Low(0.1), _Scores(0.7)]).run(MEDIA["jpeg"])
    assert out["nudity"] == 0.7 and out["classifiers"]["low_model"]["score"] == 0.1
    out = SignalSuite([], [_Scores(None)]).run(MEDIA["jpeg"])
    assert out["nudity"] is None


def test_bad_plugin_names_and_clashes_are_refused() -> None:
    class Shout(_Says):
        name = "Shout!"

    class Reserved(_Says):
        name = "plugins"

    for bad in (Shout(), Reserved()):
        with pytest.raises(SignalConfigError):
            SignalSuite([bad], [])
    with pytest.raises(SignalConfigError, match="both named"):
        SignalSuite([_Says(), _Says()], [])


def test_settings_choose_and_disable_plugins() -> None:
    suite = SignalSuite.from_settings(Settings(signals_disabled=["watermark", "c2pa"]))
    assert {c.name for c in suite.checks} == {"xmp", "generator"}
    assert not SignalSuite.from_settings(Settings(nudity_classifier="none")).classifiers
    try:
        import nudenet  # noqa: F401
    except ImportError:
        with pytest.raises(SignalConfigError, match="dignity\\[nudenet\\]"):
            SignalSuite.from_settings(Settings(nudity_classifier="nudenet"))
    else:
        names = {
            c.name
            for c in SignalSuite.from_settings(Settings(nudity_classifier="nudenet")).classifiers
        }
        assert names == {"nudenet"}
