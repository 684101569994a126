"""Calibration of the Stable Diffusion watermark check: false positives, true positives, speed.

False positives: benign photos (Debian's wallpaper packages, /usr/share/backgrounds, the shared
fixtures, any --photos folder such as scikit-image's bundled data, and generated landscapes)
are turned into thousands of distinct decoder inputs at Stable Diffusion sizes: random crops
of native, downscaled and upscaled copies, flips and quarter turns, saved as PNG, JPEG (quality
70-98, 4:2:0 or 4:4:4) or WebP and decoded by ``dignity.media.decode`` as an upload would be.
For each input it records how many decoded bits agree with each payload (SDXL: the better of
its two channel orders) and prints the maximum, the 99.9th percentile, the thresholds in
``dignity.signals.watermark``, the false positives at those thresholds with a one-sided 95%
Clopper-Pearson upper bound, and the fewest bits that no benign input reached.
True positives: crops of the same photos watermarked by the real ``invisible-watermark``
encoder the way each reference script calls it (SD 1.x / 2.x: uint8 BGR; SDXL: float32 BGR,
rounded as diffusers does or truncated as generative-models does; old diffusers: float32 RGB),
read back lossless and after JPEG quality 95 and 90. Needs invisible-watermark, opencv and
PyWavelets (the dev extras); without them only the false-positive part runs.
Speed: ms per ``WatermarkCheck.check`` at 512 x 512, 1024 x 1024 and a 0.8 MP JPEG, one core.
Run (about 4 minutes on two cores; --photos may repeat, e.g. scikit-image's data folder):
``.venv/bin/python bench/watermark.py [--inputs 4500] [--tp 40] [--jobs 2] [--photos DIR]``.
"""

from __future__ import annotations

import argparse
import glob
import io
import math
import os
import random
import statistics
import sys
import time
import types
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np
from PIL import Image

from dignity.media import decode
from dignity.samples import landscape
from dignity.signals.watermark import (
    MIN_AGREEING_BITS,
    PAYLOADS,
    WatermarkCheck,
    agreement,
    decode_bits,
)

ROOT = Path(__file__).resolve().parents[1]

# Output sizes of the reference pipelines: SD 1.x 512, SD 2.x 768, SDXL's aspect buckets.
SIZES = [
    (512, 512),
    (512, 768),
    (768, 512),
    (768, 768),
    (640, 640),
    (1024, 1024),
    (1152, 896),
    (896, 1152),
    (1216, 832),
    (832, 1216),
    (1344, 768),
    (1024, 576),
]
TP_SIZES = {
    "sd1": [(512, 512), (512, 768), (768, 512)],
    "sd2": [(768, 768), (512, 512)],
    "sdxl": [(1024, 1024), (1152, 896), (896, 1152), (1216, 832), (832, 1216)],
}
TP_KINDS = ("png", "jpeg95", "jpeg95-444", "jpeg90", "jpeg90-444")
HOWS = ("sd1", "sd2", "sdxl-bgr", "sdxl-bgr-trunc", "sdxl-rgb")
FILTERS = [
    Image.Resampling.LANCZOS,
    Image.Resampling.BICUBIC,
    Image.Resampling.BILINEAR,
    Image.Resampling.BOX,
]
_LONGEST = 2560  # sources are capped here: enough for every crop, and memory stays small


def photo_paths(extra: Iterable[str]) -> list[str]:
    """Distinct benign photos: one file per wallpaper (KDE ships each at many sizes)."""
    files: list[str] = []
    for d in sorted(glob.glob("/usr/share/wallpapers/*/contents/images*/")):
        pick = sorted(glob.glob(d + "*.jpg") + glob.glob(d + "*.png"), key=os.path.getsize)
        if pick:
            files.append(pick[-1])
    for ext in ("jpg", "jpeg", "png", "webp"):
        files += sorted(glob.glob(f"/usr/share/backgrounds/**/*.{ext}", recursive=True))
        files += sorted(
            glob.glob(str(ROOT.parent / "shared" / "fixtures" / f"**/*.{ext}"), recursive=True)
        )
        for folder in extra:
            files += sorted(glob.glob(f"{folder}/**/*.{ext}", recursive=True))
    return list(dict.fromkeys(files))


def load(source: str) -> Image.Image | None:
    if source.startswith("landscape:"):
        seed = int(source.split(":")[1])
        rng = random.Random(seed)
        return landscape(seed, (rng.randrange(900, 2000), rng.randrange(700, 1500)))
    try:
        with Image.open(source) as im:
            img = im.convert("RGB")
    except Exception:
        return None
    if min(img.size) < 200:
        return None
    if max(img.size) > _LONGEST:
        img.thumbnail((_LONGEST, _LONGEST), Image.Resampling.LANCZOS)
    return img


def variant(img: Image.Image, rng: random.Random, size: tuple[int, int]) -> Image.Image:
    """A random crop of ``size`` from a flipped/turned, natively sized or rescaled copy."""
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if rng.random() < 0.25:
        img = img.transpose(Image.Transpose.ROTATE_90)
    tw, th = size
    w, h = img.size
    fit = max(tw / w, th / h)
    roll = rng.random()
    if roll < 0.3 and fit <= 1:
        scale = 1.0  # native pixels: camera noise and the source's own JPEG grid survive
    elif roll < 0.8 and fit < 1:
        scale = rng.uniform(fit, 1.0)
    else:
        scale = rng.uniform(fit, fit * 1.5)
    if scale != 1.0:
        nw, nh = max(tw, round(w * scale)), max(th, round(h * scale))
        img = img.resize((nw, nh), rng.choice(FILTERS))
    w, h = img.size
    x, y = rng.randrange(w - tw + 1), rng.randrange(h - th + 1)
    return img.crop((x, y, x + tw, y + th))


def save(img: Image.Image, rng: random.Random) -> tuple[str, bytes]:
    buf = io.BytesIO()
    roll = rng.random()
    if roll < 0.35:
        img.save(buf, "PNG", compress_level=1)
        return "png", buf.getvalue()
    if roll < 0.9:
        quality = rng.choice([70, 80, 85, 90, 92, 95, 98])
        subsampling = 0 if quality >= 90 and rng.random() < 0.3 else 2
        img.save(buf, "JPEG", quality=quality, subsampling=subsampling)
        return f"jpeg{quality}", buf.getvalue()
    img.save(buf, "WEBP", quality=rng.choice([80, 90, 95]))
    return "webp", buf.getvalue()


def agreements(img: Image.Image) -> dict[str, int]:
    """Agreeing bits per payload, the best reading of each (as the check takes it)."""
    best: dict[str, int] = {}
    for (payload, _domain, _order), bits in decode_bits(img).readings.items():
        best[payload] = max(best.get(payload, 0), agreement(bits, payload))
    return best


def benign_task(args: tuple[str, int, int]) -> list[dict[str, Any]]:
    source, count, seed = args
    img = load(source)
    if img is None:
        return []
    rng = random.Random(f"{seed}:{source}")
    rows = []
    for _ in range(count):
        size = rng.choice(SIZES)
        kind, data = save(variant(img, rng, size), rng)
        media = decode(data)
        rows.append({"source": source, "kind": kind, "size": size, **agreements(media.image)})
    return rows


# -- true positives ---------------------------------------------------------------------------


def _imwatermark() -> Any:
    sys.modules.setdefault("torch", types.ModuleType("torch"))  # rivaGan.py imports it, unused
    import imwatermark

    return imwatermark


def embed(rgb: np.ndarray, how: str, encoder: Any) -> np.ndarray:
    """``rgb`` watermarked the way the reference code for ``how`` calls the encoder."""
    if how in ("sd1", "sd2"):  # CompVis / Stability txt2img put_watermark: uint8 BGR
        return np.ascontiguousarray(
            encoder.encode(np.ascontiguousarray(rgb[..., ::-1]), "dwtDct")[..., ::-1]
        )
    x = rgb.astype(np.float32)
    if how == "sdxl-rgb":  # diffusers before PR #7013, early generative-models: RGB
        out = encoder.encode(np.ascontiguousarray(x), "dwtDct")
        return np.clip(np.round(out), 0, 255).astype(np.uint8)
    out = encoder.encode(np.ascontiguousarray(x[..., ::-1]), "dwtDct")[..., ::-1]
    if how == "sdxl-bgr-trunc":  # generative-models: clamp(x / 255) * 255, then astype(uint8)
        return (np.clip(out / 255.0, 0.0, 1.0) * 255.0).astype(np.uint8)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)  # diffusers since PR #7013: round


def tp_task(args: tuple[str, str, int]) -> list[dict[str, Any]]:
    source, how, seed = args
    iw = _imwatermark()
    img = load(source)
    if img is None:
        return []
    payload = how.split("-")[0]
    encoder = iw.WatermarkEncoder()
    encoder.set_watermark("bits", [int(b) for b in PAYLOADS[payload]])
    rng = random.Random(f"{seed}:{source}:{how}")
    rgb = np.asarray(variant(img, rng, rng.choice(TP_SIZES[payload])))
    marked = Image.fromarray(embed(rgb, how, encoder))
    check = WatermarkCheck()
    rows = []
    for kind in TP_KINDS:
        buf = io.BytesIO()
        if kind == "png":
            marked.save(buf, "PNG", compress_level=1)
        else:  # Pillow's default chroma subsampling is 4:2:0, as most re-encoders use
            full = kind.endswith("-444")
            marked.save(buf, "JPEG", quality=int(kind[4:6]), subsampling=0 if full else 2)
        data = check.check(decode(buf.getvalue())).data
        rows.append(
            {
                "how": how,
                "kind": kind,
                "found": data["found"] == payload,
                "agreement": data["agreement"][payload],
            }
        )
    return rows


# -- statistics -------------------------------------------------------------------------------


def upper_bound(failures: int, trials: int, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson upper bound on a rate seen ``failures`` times in ``trials``."""
    if trials == 0:
        return 1.0
    if failures >= trials:
        return 1.0

    def cdf(p: float) -> float:
        total = 0.0
        for k in range(failures + 1):
            log = (
                math.lgamma(trials + 1)
                - math.lgamma(k + 1)
                - math.lgamma(trials - k + 1)
                + k * math.log(p)
                + (trials - k) * math.log1p(-p)
            )
            total += math.exp(log)
        return total

    lo, hi = 1e-12, 1.0 - 1e-12
    for _ in range(100):
        mid = (lo + hi) / 2
        if cdf(mid) > 1 - confidence:
            lo = mid
        else:
            hi = mid
    return hi


def run_pool(
    fn: Callable[[Any], list[dict[str, Any]]], tasks: list[Any], jobs: int
) -> list[dict[str, Any]]:
    if jobs <= 1:
        return [row for task in tasks for row in fn(task)]
    with ProcessPoolExecutor(jobs) as pool:
        return [row for rows in pool.map(fn, tasks, chunksize=1) for row in rows]


def timing(repeat: int) -> dict[str, float]:
    """Median ms per check (decode excluded) for PNG scenes at SD sizes and a 0.8 MP JPEG."""
    check = WatermarkCheck()
    out = {}
    for label, size, fmt in (
        ("512x512 png", (512, 512), "PNG"),
        ("1024x1024 png", (1024, 1024), "PNG"),
        ("1033x775 jpeg", (1033, 775), "JPEG"),
    ):
        medias = [decode(_encode(landscape(seed, size), fmt)) for seed in range(3)]
        for media in medias:
            check.check(media)
        samples = []
        for _ in range(repeat):
            for media in medias:
                t0 = time.perf_counter()
                check.check(media)
                samples.append(time.perf_counter() - t0)
        out[label] = 1000 * statistics.median(samples)
    return out


def _encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **({"compress_level": 1} if fmt == "PNG" else {"quality": 90}))
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=4500, help="benign decoder inputs")
    parser.add_argument("--tp", type=int, default=40, help="watermarked crops per embedding")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--landscapes", type=int, default=40, help="generated scenes added")
    parser.add_argument("--photos", action="append", default=[], help="extra photo folder")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=30, help="timing rounds")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    sources = photo_paths(args.photos) + [f"landscape:{s}" for s in range(args.landscapes)]
    per_source = max(1, math.ceil(args.inputs / len(sources)))
    t0 = time.perf_counter()
    rows = run_pool(benign_task, [(s, per_source, args.seed) for s in sources], args.jobs)
    used = len({r["source"] for r in rows})
    print(
        f"benign: {len(rows)} decoder inputs from {used} sources "
        f"({len(sources) - args.landscapes} photo files listed, {args.landscapes} generated) "
        f"in {time.perf_counter() - t0:.0f} s"
    )
    kinds: dict[str, int] = {}
    for r in rows:
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
    print("  encodings:", ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    n = len(rows)
    print(
        f"{'payload':8} {'bits':>4} {'mean':>6} {'p99':>6} {'p99.9':>6} {'max':>6} "
        f"{'thresh':>7} {'FP':>3} {'95% UB':>8} {'0-FP floor':>10}"
    )
    for payload, bits in PAYLOADS.items():
        length = len(bits)
        agree = np.array([r[payload] for r in rows]) / length
        need = MIN_AGREEING_BITS[payload]
        fp = int(np.count_nonzero(agree * length >= need))
        floor = round(agree.max() * length) + 1
        print(
            f"{payload:8} {length:>4} {agree.mean():6.3f} {np.quantile(agree, 0.99):6.3f} "
            f"{np.quantile(agree, 0.999):6.3f} {agree.max():6.3f} "
            f"{need:>3}/{length:<3} {fp:>3} {upper_bound(fp, n):8.2e} {floor:>6}/{length}"
        )
        worst = sorted(rows, key=lambda r: -r[payload])[:3]
        for r in worst:
            print(f"    top: {r[payload]}/{length} {r['kind']} {r['size']} {r['source']}")

    try:
        _imwatermark()
        import cv2  # noqa: F401
        import pywt  # noqa: F401
    except ImportError as exc:
        print(f"true positives: skipped ({exc}); install the dev extras and invisible-watermark")
    else:
        photos = [s for s in sources if not s.startswith("landscape:")] or sources
        rng = random.Random(args.seed)
        tasks = []
        for how in HOWS:
            tasks += [
                (src, how, args.seed) for src in rng.sample(photos, min(args.tp, len(photos)))
            ]
        t0 = time.perf_counter()
        tp_rows = run_pool(tp_task, tasks, args.jobs)
        print(
            f"true positives: {len(tasks)} watermarked crops in {time.perf_counter() - t0:.0f} s;"
            " share found with the right payload (median agreement)"
        )
        print(f"  {'embedded as':15}" + "".join(f"{kind:>18}" for kind in TP_KINDS))
        for how in HOWS:
            cells = []
            for kind in TP_KINDS:
                sel = [r for r in tp_rows if r["how"] == how and r["kind"] == kind]
                rate = sum(r["found"] for r in sel) / max(1, len(sel))
                med = statistics.median(r["agreement"] for r in sel) if sel else float("nan")
                cells.append(f"{rate:6.1%} ({med:.3f})")
            n_how = len([r for r in tp_rows if r["how"] == how and r["kind"] == "png"])
            print(f"  {how + f' n={n_how}':15}" + "".join(f"{c:>18}" for c in cells))

    ms = timing(args.repeat)
    print(
        "speed, one core, median ms per check: " + ", ".join(f"{k} {v:.2f}" for k, v in ms.items())
    )


if __name__ == "__main__":
    main()
