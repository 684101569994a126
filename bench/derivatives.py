"""Evaluate edited-derivative detection: true matches per edit, false matches, time, bytes.

Dev set, all benign: photos from Debian's wallpaper packages (plasma-workspace-wallpapers and
gnome-backgrounds: /usr/share/wallpapers, /usr/share/backgrounds; the run stops without them),
../shared/fixtures, and generated landscapes (``dignity.samples``). Photos are grouped by
content (a wallpaper's light/dark and size variants are one group) and the groups split three
ways, so that nothing unrelated shares content with anything registered:

* **sources** (registered for real): half the groups' photos (wide ones as two separate halves)
  plus generated landscapes;
* **distractors** filling the registry to ``--registry`` photos: real features of landscapes
  of other seeds, plus windows of other groups' photos at several scales (registration data
  synthesised in bulk from real ORB keypoints: a window of ~512 px of a photo's keypoints is
  what registering that crop yields), cut from each photo and ``--variants`` other looks at
  it (turned, other gamma and contrast), so that the registry does not hold the same few
  hundred thousand descriptors over and over (it did: 210k distinct of 9.6M);
* **held out**: never registered; unrelated queries and the donors of pasted patches.

Each source gets ``--per-source`` derivatives: one benign region edit covering 10-40% of the
picture (flat patch, noise, a texture, OpenCV inpainting, a blurred region, a patch pasted
from a held-out photo), then, each with probability 1/2, crop (up to 10% a side), resize
(0.4-1.5x), mirror and JPEG (quality 60-95). Unrelated queries: held-out photos, crops of them
and landscapes of unseen seeds. The anchor is whole-image PDQ (distance <= 31, all 8 dihedral
hashes) on the same derivatives.

False matches are counted over every (query, registered photo) pair that is not a true pair:
the matcher compares each query with the whole registry (shortlist, then geometric checks), so
each query contributes ``registry - 1`` unrelated pairs (``registry`` for unrelated queries).
The 95% upper bound for 0 observed is ``1 - 0.05 ** (1 / pairs)`` (~3 / pairs).

Timing is per scanned (already decoded) image on one core: features of the query (as scanned
and mirrored), shortlist and verification; as wall time and as this process's CPU time
(``time.process_time``), which other processes on a busy machine do not inflate.

Run: ``python bench/derivatives.py`` (~5-10 min on 2 busy cores, 1e5 registered);
bigger: ``--registry 300000 --per-source 12 --landscapes 200``.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import io
import math
import os
import random
import re
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image

from dignity.derivatives.features import (
    LOW_COVERAGE,
    MIN_KEYPOINTS,
    STORED_KEYPOINTS,
    FeatureError,
    Features,
    detect,
    source_features,
    spread,
)
from dignity.derivatives.matching import DerivativeMatcher, Record
from dignity.hashing.pdq import pdq_from_image
from dignity.samples import landscape

Image.MAX_IMAGE_PIXELS = None
ROOTS = ["/usr/share/wallpapers", "/usr/share/backgrounds"]
SHARED = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dignity-bench"
REGION_KINDS = ("flat", "noise", "texture", "inpaint", "blur", "paste")
GEO_OPS = ("crop", "resize", "mirror", "jpeg")
CONSENT_RECORD_BYTES = 120  # subject, consent_by, for_whom, timestamps, ids: a generous row


# -- the photo pool ---------------------------------------------------------------------------
def _group(path: str) -> str:
    m = re.search(r"/wallpapers/([^/]+)/", path)
    if m:
        return "wp:" + m.group(1)
    m = re.search(r"/backgrounds/gnome/([a-z]+)", path)
    if m:
        return "gnome:" + m.group(1)
    if "bridge" in path:
        # The PDQ fixtures' bridge-mods and dihedral sets are one photo (edited, rotated):
        # split over two groups, a distractor window of it matched its registered twin.
        return "fx:bridge"
    return "fx:" + Path(path).parent.name


def pool() -> dict[str, list[Image.Image]]:
    """Benign photos by content group, each at most 1200 px (cached after the first run)."""
    files: dict[str, str] = {}
    paths = [p for r in ROOTS for p in glob.glob(f"{r}/**/*", recursive=True)]
    if SHARED.exists():
        paths += glob.glob(f"{SHARED}/**/*", recursive=True)
    for p in sorted(paths):
        if not p.lower().endswith((".jpg", ".jpeg", ".png", ".webp")) or "screenshot" in p:
            continue
        files.setdefault(os.path.realpath(p), p)
    CACHE.mkdir(parents=True, exist_ok=True)
    groups: dict[str, list[Image.Image]] = defaultdict(list)
    seen: set[str] = set()
    for real, p in sorted(files.items()):
        key = hashlib.sha256(real.encode()).hexdigest()[:24]
        cached = CACHE / f"{key}.png"
        if not cached.exists():
            try:
                im = Image.open(real)
                im.draft("RGB", (1200, 1200))
                im = im.convert("RGB")
            except Exception:
                continue
            im.thumbnail((1200, 1200), Image.Resampling.LANCZOS)
            # Written aside and renamed: two runs started together read no half-written file.
            part = cached.with_suffix(f".{os.getpid()}.part")
            im.save(part, "PNG")
            os.replace(part, cached)
        data = cached.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        groups[_group(p)].append(Image.open(io.BytesIO(data)).convert("RGB"))
    return dict(groups)


def photo_halves(img: Image.Image) -> list[Image.Image]:
    """A wide photo as two separate photos (left and right halves), else the photo."""
    w, h = img.size
    if w >= 1.5 * h:
        return [img.crop((0, 0, w // 2, h)), img.crop((w - w // 2, 0, w, h))]
    return [img]


def at_most(img: Image.Image, side: int) -> Image.Image:
    out = img.copy()
    out.thumbnail((side, side), Image.Resampling.LANCZOS)
    return out


# -- benign edits -----------------------------------------------------------------------------
def region_mask(rng: random.Random, w: int, h: int, area: float) -> NDArray[np.bool_]:
    """A central-ish rectangle or ellipse covering ``area`` of the picture."""
    aspect = rng.uniform(0.6, 1.6)
    rw = min(w, math.sqrt(area * w * h * aspect))
    rh = min(h, area * w * h / rw)
    cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.35, 0.7) * h
    x0 = int(max(0, min(w - rw, cx - rw / 2)))
    y0 = int(max(0, min(h - rh, cy - rh / 2)))
    mask = np.zeros((h, w), np.uint8)
    if rng.random() < 0.5:
        mask[y0 : y0 + int(rh), x0 : x0 + int(rw)] = 1
    else:
        centre = (int(x0 + rw / 2), int(y0 + rh / 2))
        axes = (int(rw / 2 * 1.128), int(rh / 2 * 1.128))  # same area as the rectangle
        cv2.ellipse(mask, centre, axes, 0, 0, 360, 1, -1)
    return mask.astype(bool)


def region_edit(
    img: Image.Image, kind: str, rng: random.Random, area: float, donor: Image.Image
) -> tuple[Image.Image, float]:
    a = np.asarray(img).copy()
    h, w = a.shape[:2]
    m = region_mask(rng, w, h, area)
    nrng = np.random.default_rng(rng.randrange(1 << 30))
    if kind == "flat":
        a[m] = [rng.randrange(256) for _ in range(3)]
    elif kind == "noise":
        a[m] = nrng.integers(0, 256, (int(m.sum()), 3), dtype=np.uint8)
    elif kind == "texture":
        yy, xx = np.mgrid[0:h, 0:w]
        f = rng.uniform(0.05, 0.3)
        t = (127 + 120 * np.sin(xx * f + yy * f * rng.uniform(-1, 1))).astype(np.uint8)
        a[m] = np.stack([t, 255 - t, t // 2], -1)[m]
    elif kind == "inpaint":
        a = cv2.inpaint(a, m.astype(np.uint8) * 255, 5, cv2.INPAINT_TELEA)
    elif kind == "blur":
        a[m] = cv2.GaussianBlur(a, (0, 0), rng.uniform(8, 20))[m]
    elif kind == "paste":
        a[m] = np.asarray(donor.resize((w, h), Image.Resampling.BILINEAR))[m]
    return Image.fromarray(a), float(m.mean())


def geometric(img: Image.Image, ops: list[str], rng: random.Random) -> Image.Image:
    w, h = img.size
    if "crop" in ops:
        left, top, right, bottom = (rng.uniform(0, 0.1) for _ in range(4))
        img = img.crop((int(left * w), int(top * h), int(w - right * w), int(h - bottom * h)))
    if "resize" in ops:
        s = rng.uniform(0.4, 1.5)
        size = (max(32, int(img.width * s)), max(32, int(img.height * s)))
        img = img.resize(size, Image.Resampling.LANCZOS)
    if "mirror" in ops:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if "jpeg" in ops:
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=rng.randrange(60, 96))
        img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return img


# -- distractors ------------------------------------------------------------------------------
def _variant(img: Image.Image, rng: random.Random) -> Image.Image:
    """Another look at a photo (turned by any angle, other gamma and contrast): its ORB
    keypoints differ from the original's, so distractors cut from many variants do not repeat
    the same descriptors (28 photos alone gave 210k distinct of 9.6M at 1e5)."""
    grey = np.asarray(img.convert("L"), dtype=np.float32)
    h, w = grey.shape
    turn = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(0, 360), rng.uniform(0.8, 1.25))
    turned = cv2.warpAffine(
        grey, turn, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    )
    lit = 255 * (np.clip(turned, 0, 255) / 255) ** rng.uniform(0.6, 1.6)
    out = (lit - lit.mean()) * rng.uniform(0.7, 1.3) + lit.mean() + rng.uniform(-20, 20)
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


def keypoint_pools(
    images: list[Image.Image], variants: int, rng: random.Random
) -> list[tuple[Features, int, int]]:
    """Real ORB keypoints of each photo and of ``variants`` other looks at it (see
    :func:`_variant`), at several scales, to cut distractor windows from."""
    out = []
    for img in images:
        for v in range(variants + 1):
            look = img if v == 0 else _variant(img, rng)
            for side in (700, 1000, 1400):
                scaled = look.copy()
                scaled.thumbnail((side, side), Image.Resampling.LANCZOS)
                if max(scaled.size) < 560:
                    continue
                gray = np.asarray(scaled.convert("L"), dtype=np.uint8)
                h, w = gray.shape
                n = int(1500 * (w * h) / (512 * 384))
                desc, xy = detect(gray, n, pool=4 * n)
                out.append((Features(desc, xy, w, h), w, h))
    return out


def synthetic_distractor(
    pools: list[tuple[Features, int, int]], rng: random.Random
) -> Features | None:
    feats, w, h = pools[rng.randrange(len(pools))]
    aspect = rng.uniform(0.6, 1.7)
    ww, wh = (512, int(512 / aspect)) if aspect >= 1 else (int(512 * aspect), 512)
    if ww >= w or wh >= h:
        return None
    x0, y0 = rng.randrange(w - ww), rng.randrange(h - wh)
    inside = (
        (feats.xy[:, 0] >= x0 + 8)
        & (feats.xy[:, 0] < x0 + ww - 8)
        & (feats.xy[:, 1] >= y0 + 8)
        & (feats.xy[:, 1] < y0 + wh - 8)
    )
    idx = np.flatnonzero(inside)
    if len(idx) < MIN_KEYPOINTS:
        return None
    xy = feats.xy[idx] - np.float32([x0, y0])
    keep = spread(xy, ww, wh, STORED_KEYPOINTS)
    return Features(feats.descriptors[idx][keep], xy[keep], ww, wh)


# -- the run ----------------------------------------------------------------------------------
def upper_bound(pairs: int) -> float:
    return 1 - 0.05 ** (1 / pairs) if pairs else 1.0


def pdq_near(a: Image.Image, b: Image.Image) -> bool:
    ha = pdq_from_image(a, dihedral=True)
    hb = pdq_from_image(b)
    ib = int(hb.hex, 16)
    return any(bin(int(x, 16) ^ ib).count("1") <= 31 for x in (ha.dihedral or (ha.hex,)))


def yardstick_ms() -> float:
    """CPU ms of one fixed workload (OpenCV ORB on a 512 x 384 scene, 1000 keypoints): how
    fast this machine is, so that runs on different machines can be compared (machines here
    have differed by 3.5x on the same code)."""
    gray = np.asarray(landscape(0, (512, 384)).convert("L"), dtype=np.uint8)
    orb = cv2.ORB.create(nfeatures=1000, fastThreshold=7)
    orb.detectAndCompute(gray, None)
    started = time.process_time()
    for _ in range(30):
        orb.detectAndCompute(gray, None)
    return (time.process_time() - started) / 30 * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--registry", type=int, default=100_000, help="registered photos in all")
    ap.add_argument("--per-source", type=int, default=8, help="derivatives per source")
    ap.add_argument("--landscapes", type=int, default=60, help="generated landscape sources")
    ap.add_argument("--real-distractors", type=int, default=1000, help="landscapes, real ORB")
    ap.add_argument("--unrelated", type=int, default=150, help="unrelated queries (at most)")
    ap.add_argument("--variants", type=int, default=12, help="other looks at each distractor photo")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    rng = random.Random(args.seed)
    t0 = time.perf_counter()
    print(
        "load average (1, 5, 15 min) at the start: "
        + ", ".join(f"{x:.2f}" for x in os.getloadavg())
    )

    groups = pool()
    if len(groups) < 10:
        # Without the wallpapers the split leaves no distractor groups and a registry of a
        # thousand generated scenes: figures that look fine and say nothing.
        sys.exit(
            f"only {len(groups)} content groups of photos: install Debian's "
            "plasma-workspace-wallpapers and gnome-backgrounds (apt-get install) first"
        )
    names = sorted(groups)
    random.Random(args.seed).shuffle(names)
    n = len(names)
    source_groups = names[: n // 2]
    distractor_groups = names[n // 2 : n // 2 + (3 * n) // 10]
    held_groups = names[n // 2 + (3 * n) // 10 :]
    sources: list[Image.Image] = []
    for g in source_groups:
        # One photo per group: a group's other files are the same picture (light and dark
        # variants, other sizes, the PDQ fixtures' edits), not other people's photos.
        sources += [at_most(x, 1024) for x in photo_halves(groups[g][0])]
    sources += [landscape(seed, (1024, 768)) for seed in range(args.landscapes)]
    held = [at_most(x, 1024) for g in held_groups for x in photo_halves(groups[g][0])]
    held = held or [landscape(500_000 + i, (900, 600)) for i in range(10)]
    print(
        f"pool: {n} content groups ({len(source_groups)} source, {len(distractor_groups)} "
        f"distractor, {len(held_groups)} held out); {len(sources)} sources "
        f"({args.landscapes} generated)",
        flush=True,
    )

    records: list[Record] = []
    registered: list[int] = []  # index into sources
    coverage: list[float] = []  # of each registered source (see Features.coverage)
    refused = 0
    blob_bytes: list[int] = []
    for i, img in enumerate(sources):
        try:
            feats = source_features(img)
        except FeatureError:
            refused += 1
            continue
        records.append(Record(len(records) + 1, f"person-{i}", feats))
        registered.append(i)
        coverage.append(feats.coverage())
        blob_bytes.append(len(feats.pack()))
    n_sources = len(records)
    photos = len(sources) - args.landscapes
    low = sum(c < LOW_COVERAGE for c, i in zip(coverage, registered, strict=True) if i < photos)
    print(
        f"registered {n_sources} sources ({refused} refused as too plain; {low} photos "
        f"registered with a low-coverage warning)",
        flush=True,
    )

    for k in range(args.real_distractors):
        if len(records) >= args.registry:
            break
        feats = source_features(landscape(1_000_000 + k, (rng.choice([640, 800, 1024]), 600)))
        records.append(Record(len(records) + 1, "distractor", feats))
        blob_bytes.append(len(feats.pack()))
    pools = keypoint_pools(
        [img for g in distractor_groups for img in groups[g]], args.variants, rng
    )
    while len(records) < args.registry and pools:
        feats_or_none = synthetic_distractor(pools, rng)
        if feats_or_none is not None:
            records.append(Record(len(records) + 1, "distractor", feats_or_none))
            blob_bytes.append(len(feats_or_none.pack()))
    t_build = time.perf_counter()
    matcher = DerivativeMatcher(records)
    t_build = time.perf_counter() - t_build
    del records
    reg = len(matcher)
    print(f"registry: {reg} photos, index built in {t_build:.1f} s", flush=True)

    # Derivatives of every registered source, and unrelated queries.
    found: dict[str, list[bool]] = defaultdict(list)
    pdq_found: list[bool] = []
    wrong = 0
    false_unrelated = 0
    times: list[float] = []
    cpu_times: list[float] = []  # CPU time of this process: not inflated by other processes
    unrelated_cpu: list[float] = []
    derivative_cpu: list[float] = []
    false_seen: list[str] = []  # what each false match was, to look into
    queries = 0
    for sid0, i in enumerate(registered):
        src = sources[i]
        for d in range(args.per_source):
            kind = REGION_KINDS[(sid0 * args.per_source + d) % len(REGION_KINDS)]
            area = rng.uniform(0.1, 0.4)
            ops = [op for op in GEO_OPS if rng.random() < 0.5]
            edited, real_area = region_edit(src, kind, rng, area, rng.choice(held))
            query = geometric(edited, ops, rng)
            started, cpu = time.perf_counter(), time.process_time()
            got = matcher.match(query)
            times.append(time.perf_counter() - started)
            cpu_times.append(time.process_time() - cpu)
            derivative_cpu.append(cpu_times[-1])
            queries += 1
            ok = got is not None and got.source_id == sid0 + 1
            if got is not None and not ok:
                wrong += 1
                false_seen.append(f"derivative of source {sid0 + 1} ({kind}, {ops}) -> {got}")
            found["all"].append(ok)
            found[f"region={kind}"].append(ok)
            found[f"area={'30-40%' if real_area >= 0.3 else '10-30%'}"].append(ok)
            for op in ops:
                found[f"op={op}"].append(ok)
            if len(ops) == 0:
                found["op=(none)"].append(ok)
            if len(ops) >= 3:
                found["ops>=3 combined"].append(ok)
            generated = i >= len(sources) - args.landscapes
            found[f"source={'generated' if generated else 'photo'}"].append(ok)
            if not generated:  # registration warns under LOW_COVERAGE: how much that tells
                plain = coverage[sid0] < LOW_COVERAGE
                found[f"photo, coverage {'<' if plain else '>='}{LOW_COVERAGE:.0%}"].append(ok)
            pdq_found.append(pdq_near(src, query))
    unrelated = [geometric(img, [op for op in GEO_OPS if rng.random() < 0.5], rng) for img in held]
    unrelated += [landscape(2_000_000 + k, (900, 650)) for k in range(args.unrelated)]
    unrelated = unrelated[: max(args.unrelated, len(held))]
    for img in unrelated:
        started, cpu = time.perf_counter(), time.process_time()
        got = matcher.match(img)
        times.append(time.perf_counter() - started)
        cpu_times.append(time.process_time() - cpu)
        unrelated_cpu.append(time.process_time() - cpu)
        false_unrelated += got is not None
        if got is not None:
            false_seen.append(f"unrelated image {len(unrelated_cpu) - 1} {img.size} -> {got}")
    n_deriv = len(found["all"])
    pairs = n_deriv * (reg - 1) + len(unrelated) * reg
    false = wrong + false_unrelated

    print()
    print(f"{'edit':<22} {'found':>8} {'of':>6} {'rate':>7}")
    for key in sorted(found):
        v = found[key]
        print(f"{key:<22} {sum(v):>8} {len(v):>6} {sum(v) / len(v):>7.1%}")
    print(
        f"\nanchor, whole-image PDQ (<= 31, dihedral) on the same derivatives: "
        f"{sum(pdq_found) / len(pdq_found):.1%}; ours / anchor = "
        f"{(sum(found['all']) / n_deriv) / max(1e-9, sum(pdq_found) / len(pdq_found)):.2f}x"
    )
    print(
        f"false matches: {false} ({wrong} derivatives matched to another photo, "
        f"{false_unrelated} of {len(unrelated)} unrelated images matched) over {pairs:.3g} "
        f"unrelated pairs; 95% upper bound of the false-match rate per pair: "
        f"{upper_bound(pairs) if false == 0 else float('nan'):.2g}"
    )
    for line in false_seen:
        print(f"  false match: {line}")
    times_ms = sorted(t * 1000 for t in times)
    print(
        f"time per scanned image, {reg} registered, one core: mean "
        f"{statistics.mean(times_ms):.1f} ms, p50 {times_ms[len(times_ms) // 2]:.1f} ms, "
        f"p95 {times_ms[int(len(times_ms) * 0.95)]:.1f} ms ({queries + len(unrelated)} scans)"
    )
    cpu_ms = sorted(t * 1000 for t in cpu_times)
    print(
        f"CPU time per scan (process_time): mean {statistics.mean(cpu_ms):.1f} ms, p50 "
        f"{cpu_ms[len(cpu_ms) // 2]:.1f} ms, p95 {cpu_ms[int(len(cpu_ms) * 0.95)]:.1f} ms; "
        f"unrelated images only: mean {1000 * statistics.mean(unrelated_cpu):.1f} ms"
    )
    for name, part in (("derivatives", derivative_cpu), ("unrelated", unrelated_cpu)):
        ms = sorted(t * 1000 for t in part)
        print(
            f"CPU time per scan, {name} ({len(ms)}): mean {statistics.mean(ms):.1f} ms, "
            f"p50 {ms[len(ms) // 2]:.1f} ms, p90 {ms[int(len(ms) * 0.9)]:.1f} ms"
        )
    print(
        "load average (1, 5, 15 min) at the end: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())
    )
    print(f"machine yardstick (ORB on a 512 x 384 scene): {yardstick_ms():.1f} ms CPU")
    stored = statistics.mean(blob_bytes)
    print(
        f"bytes per registered photo: stored descriptors {stored:.0f} B (+~"
        f"{CONSENT_RECORD_BYTES} B consent record) = {stored + CONSENT_RECORD_BYTES:.0f} B; "
        f"in memory {matcher.memory_bytes() / reg:.0f} B"
    )
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
