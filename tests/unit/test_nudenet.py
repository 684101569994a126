"""The optional NudeNet detector: its pre- and post-processing against NudeNet's own, the score
rule on injected model outputs (never on real intimate imagery), and benign pictures."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import io
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dignity import samples
from dignity.media import decode
from dignity.settings import Settings
from dignity.signals import nudenet
from dignity.signals.base import Classifier
from tests.conftest import shared_fixture

needs_nudenet = pytest.mark.skipif(
    importlib.util.find_spec("nudenet") is None,
    reason="nudenet is not installed (optional extra: pip install 'dignity[nudenet]')",
)
PHOTOS = (
    "pdq/bridge-mods/aaa-orig.jpg",
    "pdq/dihedral/bridge-2-rotate-90.jpg",
    "pdq/misc-images/c.png",
    "pdq/misc-images/wee.jpg",
    "c2pa/A.jpg",
    "c2pa/C.jpg",
)


@pytest.fixture(scope="module")
def detector() -> nudenet.NudeNetClassifier:
    found = nudenet.create(Settings())
    assert len(found) == 1
    clf = found[0]
    assert isinstance(clf, nudenet.NudeNetClassifier)
    return clf


class _Input:
    name = "images"


class _FakeSession:
    """Stands in for the model: returns a prepared output, as the policy tests do."""

    def __init__(self, output: np.ndarray) -> None:
        self.output = output
        self.fed: list[np.ndarray] = []

    def get_inputs(self) -> list[_Input]:
        return [_Input()]

    def run(self, _names: object, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.fed.append(feeds["images"])
        return [self.output]


def _output(rows: list[tuple[str, float, tuple[float, float, float, float]]]) -> np.ndarray:
    """A 1 x 22 x 2100 model output with the given (label, score, centre box) rows."""
    out = np.zeros((1, 22, 2100), dtype=np.float32)
    out[0, 0:4, :] = 1.0
    for i, (label, score, (cx, cy, w, h)) in enumerate(rows):
        out[0, 0:4, i] = (cx, cy, w, h)
        out[0, 4 + nudenet.LABELS.index(label), i] = score
    return out


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_create_is_empty_without_nudenet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nudenet", None)  # makes `import nudenet` fail
    assert nudenet.create(Settings()) == []


def test_exposed_labels_are_body_parts_only() -> None:
    assert nudenet.EXPOSED_LABELS.issubset(nudenet.LABELS)
    assert len(nudenet.LABELS) == 18
    for label in nudenet.EXPOSED_LABELS:
        assert label.endswith("_EXPOSED")
        assert any(part in label for part in ("GENITALIA", "BREAST", "BUTTOCKS", "ANUS"))
    assert "MALE_BREAST_EXPOSED" not in nudenet.EXPOSED_LABELS
    assert not any(label.startswith("FACE_") for label in nudenet.EXPOSED_LABELS)


@needs_nudenet
def test_create_finds_the_bundled_model(detector: nudenet.NudeNetClassifier) -> None:
    assert isinstance(detector, Classifier)
    assert (detector.name, detector.signal) == ("nudenet", "nudity")
    path = nudenet.model_path()
    assert path is not None and path.name == "320n.onnx" and path.parent.name == "nudenet"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    version = importlib.metadata.version("nudenet")
    assert detector.version == f"nudenet-{version}-320n-sha256:{digest[:12]}/1"


@needs_nudenet
def test_labels_are_nudenets() -> None:
    from nudenet import nudenet as package

    assert tuple(vars(package)["__labels"]) == nudenet.LABELS


@needs_nudenet
@pytest.mark.parametrize("size", [(640, 480), (300, 700), (1, 1), (3, 1000)])
def test_preprocessing_is_nudenets_with_rgb_input(size: tuple[int, int]) -> None:
    from nudenet.nudenet import _read_image

    rgb = np.asarray(samples.landscape(7, size) if min(size) > 20 else Image.new("RGB", size, 9))
    ours, scale = nudenet.preprocess(rgb)
    # NudeNet turns RGBA into the RGB blob (its browser demo's path); a 3-channel array would
    # have its red and blue swapped (NudeNet issue #203), which we do not reproduce.
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    theirs = _read_image(rgba, 320)[0]
    assert ours.shape == (1, 3, 320, 320) and ours.dtype == np.float32
    np.testing.assert_array_equal(ours, theirs)
    assert scale == max(size) / 320


@needs_nudenet
def test_preprocessing_feeds_rgb_and_pads_black() -> None:
    red = np.zeros((100, 200, 3), np.uint8)
    red[..., 0] = 255
    blob, scale = nudenet.preprocess(red)
    assert scale == 200 / 320
    assert blob[0, 0, 10, 10] == 1.0 and blob[0, 1, 10, 10] == 0.0 and blob[0, 2, 10, 10] == 0.0
    assert not blob[0, :, 300:, :].any()  # the bottom padding


@needs_nudenet
@pytest.mark.parametrize("seed", range(4))
def test_postprocessing_is_nudenets(seed: int) -> None:
    from nudenet.nudenet import _postprocess

    rng = np.random.default_rng(seed)
    out = np.zeros((1, 22, 2100), dtype=np.float32)
    out[0, 0:2] = rng.uniform(0, 320, (2, 2100))
    out[0, 2:4] = rng.uniform(4, 160, (2, 2100))
    out[0, 4:] = rng.uniform(0, 0.15, (18, 2100))
    hot = rng.choice(2100, 60, replace=False)
    out[0, 4 + rng.integers(0, 18, 60), hot] = rng.uniform(0.1, 1.0, 60)
    width, height = 900, 500
    scale = max(width, height) / 320
    ours = nudenet.postprocess(out, scale, width, height)
    theirs = _postprocess([out], 0, 400, 1.0, 1.8, width, height, 320, 320)
    assert len(ours) == len(theirs) > 0
    for (class_id, score, box), ref in zip(ours, theirs, strict=True):
        assert nudenet.LABELS[class_id] == ref["class"]
        assert score == pytest.approx(ref["score"], abs=1e-6)
        # NudeNet truncates its boxes to ints; ours stay floats until reported.
        assert np.allclose(box, ref["box"], atol=1.0)


@needs_nudenet
def test_score_counts_exposed_parts_only(
    detector: nudenet.NudeNetClassifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _FakeSession(
        _output(
            [
                ("FACE_FEMALE", 0.9, (100, 50, 40, 20)),
                ("BUTTOCKS_EXPOSED", 0.6, (250, 200, 40, 40)),
                ("FEET_EXPOSED", 0.95, (30, 200, 20, 20)),
                ("MALE_BREAST_EXPOSED", 0.99, (200, 60, 30, 30)),
                ("FEMALE_BREAST_EXPOSED", 0.15, (160, 160, 30, 30)),  # below NudeNet's floor
            ]
        )
    )
    monkeypatch.setattr(nudenet, "onnx_session", lambda path: fake)
    media = decode(samples.encode(samples.landscape(1, (640, 480)), "PNG"))
    report = detector.classify(media)
    assert report.score == pytest.approx(0.6)
    boxes = {box["label"]: box for box in report.detail["boxes"]}
    assert set(boxes) == {"FACE_FEMALE", "BUTTOCKS_EXPOSED", "FEET_EXPOSED", "MALE_BREAST_EXPOSED"}
    # Model units are 640 / 320 = 2 picture pixels; boxes are [x, y, w, h] from the top left.
    assert boxes["FACE_FEMALE"]["box"] == [160, 80, 80, 40]
    assert boxes["FACE_FEMALE"]["score"] == pytest.approx(0.9)
    assert report.detail["model"] == "nudenet"
    json.dumps(report.detail)
    assert fake.fed[0].shape == (1, 3, 320, 320)


@needs_nudenet
def test_boxes_are_in_full_image_coordinates_for_a_draft(
    detector: nudenet.NudeNetClassifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _FakeSession(_output([("ANUS_EXPOSED", 0.7, (100, 50, 40, 20))]))
    monkeypatch.setattr(nudenet, "onnx_session", lambda path: fake)
    media = decode(samples.encode(samples.landscape(2, (1600, 1200))), min_size=320)
    assert media.reduced and media.image.size == (800, 600)
    report = detector.classify(media)
    assert report.score == pytest.approx(0.7)
    # 800 px / 320 = 2.5 draft pixels a unit, and the draft is half the full picture.
    assert report.detail["boxes"] == [
        {"label": "ANUS_EXPOSED", "score": pytest.approx(0.7), "box": [400, 200, 200, 100]}
    ]


@needs_nudenet
def test_covered_parts_give_zero(
    detector: nudenet.NudeNetClassifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _FakeSession(_output([("FEMALE_BREAST_COVERED", 0.8, (100, 100, 50, 50))]))
    monkeypatch.setattr(nudenet, "onnx_session", lambda path: fake)
    report = detector.classify(decode(samples.encode(samples.landscape(3, (320, 320)))))
    assert report.score == 0.0
    assert [box["label"] for box in report.detail["boxes"]] == ["FEMALE_BREAST_COVERED"]


@needs_nudenet
def test_a_model_of_another_shape_is_reported_not_raised(
    detector: nudenet.NudeNetClassifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _FakeSession(np.zeros((1, 10, 2100), dtype=np.float32))
    monkeypatch.setattr(nudenet, "onnx_session", lambda path: fake)
    report = detector.classify(decode(samples.encode(samples.landscape(3, (64, 64)))))
    assert report.score is None and "classes" in report.detail["error"]


@needs_nudenet
@pytest.mark.parametrize("seed", range(3))
def test_synthetic_landscapes_find_nothing(detector: nudenet.NudeNetClassifier, seed: int) -> None:
    report = detector.classify(decode(samples.encode(samples.landscape(seed))))
    assert report.score is not None and report.score < 0.2
    assert report.detail["model"] == "nudenet"
    assert isinstance(report.detail["boxes"], list)


@needs_nudenet
@pytest.mark.parametrize("name", PHOTOS)
def test_benign_photos_score_low(detector: nudenet.NudeNetClassifier, name: str) -> None:
    report = detector.classify(decode(shared_fixture(*name.split("/")).read_bytes()))
    assert report.score is not None and report.score < 0.2


@needs_nudenet
@pytest.mark.parametrize(
    "image",
    [
        Image.new("RGB", (1, 1), (200, 100, 50)),
        Image.new("RGB", (3, 1000), (200, 100, 50)),
        Image.new("RGB", (1000, 3), (20, 100, 50)),
        Image.linear_gradient("L").resize((300, 200)),
        Image.merge("RGBA", [Image.linear_gradient("L")] * 4),
    ],
    ids=["1x1", "3x1000", "1000x3", "L", "RGBA"],
)
def test_odd_images_get_a_score(detector: nudenet.NudeNetClassifier, image: Image.Image) -> None:
    report = detector.classify(decode(_png(image)))
    assert report.score is not None and 0.0 <= report.score <= 1.0


@needs_nudenet
def test_cmyk_file_gets_a_score(detector: nudenet.NudeNetClassifier) -> None:
    media = decode(samples.encode(samples.landscape(5, (320, 240)).convert("CMYK"), "JPEG"))
    assert media.mode == "CMYK"
    report = detector.classify(media)
    assert report.score is not None and report.score < 0.2


@needs_nudenet
def test_one_session_and_thread_safe(fresh_sessions: list[Path]) -> None:
    clf = nudenet.NudeNetClassifier()
    media = [decode(samples.encode(samples.landscape(seed, (400, 300)))) for seed in range(6)]
    sequential = [clf.classify(m) for m in media]
    with ThreadPoolExecutor(4) as pool:
        concurrent = list(pool.map(clf.classify, media))
    assert [r.score for r in concurrent] == [r.score for r in sequential]
    assert [r.detail for r in concurrent] == [r.detail for r in sequential]
    assert all(r.score is not None for r in sequential)
    assert fresh_sessions == [clf.path]
