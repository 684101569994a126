"""Evaluate pictures inside pictures (dignity.regions): banked photos found inside phone
screenshots (light and dark), desktop browser windows, 2 x 2 collages, memes with text bars,
chat forwards and bordered reposts, against whole-image PDQ (the anchor) in the same run.

Dev set, all benign: photos from Debian's wallpaper packages (plasma-workspace-wallpapers and
gnome-backgrounds; the run stops without them) and generated landscapes, split by content
group (``bench/derivatives.py``'s pool) into **banked** photos and **unrelated** ones that are
never banked. Each banked photo (whole-image PDQ quality >= the engine's floor) is put into
every layout of :mod:`dignity.sample_layouts` (scaled to fit, JPEG at quality 70-95 or PNG),
and each layout is scanned as ``dignity match`` and ``/v1/scan`` do: one decode
(``decode_upload``), hashes with proposals (``regions.with_regions``), and
``MatchEngine.match_image`` (the whole image with its 8 dihedral hashes, each proposal as shown
and mirrored) against a real SQLite bank at the default threshold (31). The bank also holds
distractor entries (PDQ of generated landscapes and of windows of photos of other content
groups) so that the false-match bound means something.

* **found**: the layout's match list has the banked photo's entry (whole image or a region);
  the anchor is the same match with proposals off.
* **false**: any match on a layout around an unrelated photo or on a plain unrelated photo, or
  a layout of a banked photo matched to another entry. Each query image is compared with every
  bank entry: ``pairs = queries x entries``; the 95% upper bound for 0 observed is
  ``1 - 0.05 ** (1 / pairs)`` (~3 / pairs).
* **tightness**: for each true layout, the proposal nearest the picture (IoU), and the error
  of its edges in % of the picture's side.
* **edited derivatives**: registered photos (``DerivativeMatcher``) edited as
  ``bench/derivatives.py`` edits them (a repainted region: flat, noise, texture, inpaint,
  blur, pasted patch), shown inside the layouts; found when ``match_media`` (whole image,
  then the proposals at their own scale) names the source. False over unrelated layouts.
* **cost**: CPU time (``time.process_time``, one core) of proposals and their PDQ per scanned
  image, median and p95, next to the whole-image hash's; the decode is shared (no extra
  decode). The machine is shared: a yardstick is printed with the figures.

Run: ``python bench/regions.py`` (~3-6 min on 2 busy cores); ``--quick`` for a smaller run.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import replace

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2
from PIL import Image

from derivatives import GEO_OPS, REGION_KINDS, at_most, geometric, pool, region_edit, yardstick_ms
from dignity.derivatives import (
    DerivativeMatcher,
    FeatureError,
    Record,
    match_media,
    source_features,
)
from dignity.hashing.pdq import pdq_from_image
from dignity.hashing.signals import decode_upload, hash_media
from dignity.matching import BankService, MatchEngine, NewEntry
from dignity.regions import Region, region_hashes, with_regions
from dignity.sample_layouts import LAYOUTS
from dignity.samples import encode, landscape
from dignity.settings import Settings
from dignity.storage.db import open_database

THRESHOLD = 31


def upper_bound(pairs: int) -> float:
    return 1 - 0.05 ** (1 / pairs) if pairs else 1.0


def shared(img: Image.Image, rng: random.Random) -> bytes:
    """How a layout travels: JPEG at quality 70-95 three times in four, else PNG."""
    if rng.random() < 0.75:
        return encode(img, "JPEG", quality=rng.randrange(70, 96))
    return encode(img, "PNG")


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * q))] if s else float("nan")


def windows(img: Image.Image, rng: random.Random, n: int) -> list[Image.Image]:
    """Crops of a photo at several places and scales: distractor pictures for the bank."""
    out = []
    w, h = img.size
    for _ in range(n):
        s = rng.uniform(0.3, 0.8)
        cw, ch = int(w * s), int(h * rng.uniform(0.3, 0.8))
        x, y = rng.randrange(w - cw + 1), rng.randrange(h - ch + 1)
        out.append(img.crop((x, y, x + cw, y + ch)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--landscapes", type=int, default=20, help="generated banked photos")
    ap.add_argument("--distractors", type=int, default=3000, help="distractor bank entries")
    ap.add_argument("--derivative-sources", type=int, default=24)
    ap.add_argument("--seed", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="a few photos only")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    rng = random.Random(args.seed)
    t0 = time.perf_counter()
    print("load average at the start: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    groups = pool()
    if len(groups) < 10:
        sys.exit(
            f"only {len(groups)} content groups of photos: install Debian's "
            "plasma-workspace-wallpapers and gnome-backgrounds (apt-get install) first"
        )
    names = sorted(groups)
    random.Random(args.seed).shuffle(names)
    # Three disjoint sets of content groups: banked photos, distractor entries, unrelated
    # queries (a wallpaper's light and dark variants are one group: never on two sides).
    half, rest = len(names) // 2, len(names) - len(names) // 2
    banked_groups = names[:half]
    distractor_groups = names[half : half + rest // 2]
    other_groups = names[half + rest // 2 :]
    if args.quick:
        banked_groups, other_groups = banked_groups[:8], other_groups[:8]
        distractor_groups = distractor_groups[:8]
        args.landscapes, args.distractors, args.derivative_sources = 4, 300, 6
    settings = Settings()
    floor = settings.pdq_min_quality
    candidates = [at_most(groups[g][0], 1024) for g in banked_groups]
    candidates += [landscape(100 + i, (900, 650)) for i in range(args.landscapes)]
    banked = [p for p in candidates if pdq_from_image(p).quality >= floor]
    unrelated = [at_most(groups[g][0], 1024) for g in other_groups]
    fillers = [at_most(x, 700) for g in other_groups for x in groups[g][:1]]
    print(
        f"pool: {len(names)} content groups; {len(banked)} banked photos "
        f"({len(candidates) - len(banked)} under PDQ quality {floor} left out), "
        f"{len(unrelated)} unrelated photos",
        flush=True,
    )

    with tempfile.TemporaryDirectory() as tmp:
        db = open_database(f"sqlite:///{tmp}/bench.sqlite3")
        svc = BankService(db)
        svc.create_bank("ncii", threshold=THRESHOLD)
        truth: list[int] = []
        for p in banked:
            value = pdq_from_image(p).hex
            res = svc.add_entries("ncii", [NewEntry("pdq", value)])
            truth.append(res.outcomes[("pdq", value)][0])
        # Distractors: landscapes of other seeds and windows of other groups' later photos.
        extra: list[str] = []
        drng = random.Random(args.seed + 1)
        distractor_photos = [x for g in distractor_groups for x in groups[g]]
        k = 0
        while len(extra) < args.distractors:
            if k % 2 == 0:
                img = landscape(1_000_000 + k, (drng.choice([320, 400]), 260))
                extra.append(pdq_from_image(img).hex)
            else:
                src = distractor_photos[drng.randrange(len(distractor_photos))]
                extra += [pdq_from_image(w).hex for w in windows(at_most(src, 480), drng, 4)]
            k += 1
        svc.add_entries("ncii", [NewEntry("pdq", v) for v in extra])
        engine = MatchEngine(db, min_quality=floor)
        engine.load()
        entries = len(engine)
        print(f"bank: {entries} PDQ entries ({len(banked)} banked photos)", flush=True)

        found: dict[str, list[bool]] = defaultdict(list)
        anchor: dict[str, list[bool]] = defaultdict(list)
        ious: list[float] = []
        edge_err: list[float] = []
        region_cpu: list[float] = []
        layout_cpu: dict[str, list[float]] = defaultdict(list)
        whole_cpu: list[float] = []
        n_props: list[int] = []
        false_seen: list[str] = []
        queries = 0
        for i, photo in enumerate(banked):
            others = [f for f in fillers if f is not photo] or [landscape(7, (600, 400))]
            for name, layout in LAYOUTS.items():
                img, box = layout(photo, rng, others)
                data = shared(img, rng)
                media = decode_upload(data, settings)
                started = time.process_time()
                plain = hash_media(media, data, dihedral=True)
                middle = time.process_time()
                found_regions = region_hashes(
                    media.image, (media.width, media.height), dihedral=True
                )
                region_cpu.append(time.process_time() - middle)
                layout_cpu[name].append(region_cpu[-1] * 1000)
                whole_cpu.append(middle - started)
                hashes = replace(plain, regions=found_regions)
                n_props.append(len(hashes.regions))
                outcome = engine.match_image(hashes, dihedral=True)
                base = engine.match_image(plain, dihedral=True)
                queries += 1
                ok = any(m.entry_id == truth[i] for m in outcome.matches)
                wrong = [m for m in outcome.matches if m.entry_id != truth[i]]
                if wrong:
                    false_seen.append(f"banked photo {i} in {name} -> {wrong}")
                found[name].append(ok)
                found["all"].append(ok)
                anchor[name].append(any(m.entry_id == truth[i] for m in base.matches))
                anchor["all"].append(anchor[name][-1])
                if hashes.regions:
                    best: Region = max(
                        (r.region for r in hashes.regions), key=lambda r: iou(r.box(), box)
                    )
                    ious.append(iou(best.box(), box))
                    bw, bh = box[2] - box[0], box[3] - box[1]
                    b = best.box()
                    edge_err.append(
                        100
                        * max(
                            abs(b[0] - box[0]) / bw,
                            abs(b[2] - box[2]) / bw,
                            abs(b[1] - box[1]) / bh,
                            abs(b[3] - box[3]) / bh,
                        )
                    )
                else:
                    ious.append(0.0)
        n_true = queries
        false_unrelated = 0
        n_unrelated = 0
        for j, photo in enumerate(unrelated):
            others = [f for f in fillers if f is not photo] or [landscape(7, (600, 400))]
            items = [("plain", at_most(photo, 1024), None)]
            items += [(name, *layout(photo, rng, others)) for name, layout in LAYOUTS.items()]
            for name, img, _ in items:
                data = shared(img, rng)
                media = decode_upload(data, settings)
                hashes = with_regions(hash_media(media, data, dihedral=True), media, dihedral=True)
                outcome = engine.match_image(hashes, dihedral=True)
                n_unrelated += 1
                if outcome.matches:
                    false_unrelated += 1
                    false_seen.append(f"unrelated photo {j} ({name}) -> {outcome.matches}")
        pairs = n_true * (entries - 1) + n_unrelated * entries
        false = false_unrelated + sum(1 for x in false_seen if x.startswith("banked"))

        print(f"\n{'layout':<14} {'regions':>8} {'anchor':>8} {'of':>5}")
        for key in [*LAYOUTS, "all"]:
            v, a = found[key], anchor[key]
            print(f"{key:<14} {sum(v) / len(v):>8.1%} {sum(a) / len(a):>8.1%} {len(v):>5}")
        print(
            f"found inside layouts: {sum(found['all'])} of {n_true} "
            f"({sum(found['all']) / n_true:.1%}); whole-image PDQ (anchor, same run): "
            f"{sum(anchor['all'])} ({sum(anchor['all']) / n_true:.1%})"
        )
        print(
            f"false matches: {false} ({false_unrelated} of {n_unrelated} unrelated layouts and "
            f"plain photos) over {pairs:.3g} (query, entry) pairs; 95% upper bound per pair: "
            f"{upper_bound(pairs) if false == 0 else float('nan'):.2g}"
        )
        for line in false_seen[:20]:
            print(f"  false match: {line}")
        print(
            f"tightness: best proposal IoU median {statistics.median(ious):.3f}, p10 "
            f"{pct(ious, 0.1):.3f}; worst edge error median {statistics.median(edge_err):.2f}% "
            f"p90 {pct(edge_err, 0.9):.2f}% of the picture's side"
        )
        rc = [t * 1000 for t in region_cpu]
        wc = [t * 1000 for t in whole_cpu]
        print(
            f"cost per scanned image (CPU, one core): proposals + their PDQ median "
            f"{statistics.median(rc):.1f} ms, p95 {pct(rc, 0.95):.1f} ms "
            f"({statistics.mean(n_props):.1f} proposals on average, at most "
            f"{max(n_props)}); whole-image hashes median {statistics.median(wc):.1f} ms; "
            "no extra decode"
        )
        print(
            "  by layout (median / p95 ms): "
            + ", ".join(
                f"{k} {statistics.median(v):.1f} / {pct(v, 0.95):.1f}"
                for k, v in layout_cpu.items()
            )
        )

        # -- edited derivatives inside layouts ------------------------------------------------
        records: list[Record] = []
        sources: list[Image.Image] = []
        for p in banked:
            if len(records) >= args.derivative_sources:
                break
            try:
                feats = source_features(p)
            except FeatureError:
                continue
            records.append(Record(len(records) + 1, f"person-{len(records)}", feats))
            sources.append(p)
        for k2 in range(3 * args.derivative_sources):
            try:
                feats = source_features(landscape(5_000_000 + k2, (800, 600)))
            except FeatureError:
                continue
            records.append(Record(len(records) + 1, "distractor", feats))
        matcher = DerivativeMatcher(records)
        d_found: dict[str, list[bool]] = defaultdict(list)
        d_anchor: list[bool] = []
        d_false = 0
        d_cpu: list[float] = []
        d_whole_cpu: list[float] = []
        names_l = list(LAYOUTS)
        for s_i, src in enumerate(sources):
            for d in range(len(names_l)):
                kind = REGION_KINDS[(s_i + d) % len(REGION_KINDS)]
                edited, _ = region_edit(src, kind, rng, rng.uniform(0.1, 0.3), unrelated[0])
                edited = geometric(edited, [op for op in GEO_OPS if rng.random() < 0.3], rng)
                name = names_l[d]
                img, _ = LAYOUTS[name](edited, rng, fillers)
                data = shared(img, rng)
                media = decode_upload(data, settings)
                hashes = with_regions(hash_media(media, data, dihedral=True), media, dihedral=True)
                started = time.process_time()
                got = match_media(matcher, media, hashes.regions)
                d_cpu.append(time.process_time() - started)
                started = time.process_time()
                whole = matcher.match(media.image, (media.width, media.height))
                d_whole_cpu.append(time.process_time() - started)
                ok = got is not None and got["source_id"] == s_i + 1
                if got is not None and not ok:
                    d_false += 1
                d_found[name].append(ok)
                d_found["all"].append(ok)
                d_anchor.append(whole is not None and whole.source_id == s_i + 1)
        d_unrelated = 0
        for photo in unrelated[: max(10, len(sources))]:
            for layout in LAYOUTS.values():
                img, _ = layout(photo, rng, fillers)
                data = shared(img, rng)
                media = decode_upload(data, settings)
                hashes = with_regions(hash_media(media, data, dihedral=True), media, dihedral=True)
                d_unrelated += 1
                d_false += match_media(matcher, media, hashes.regions) is not None
        d_all = d_found["all"]
        d_pairs = len(d_all) * (len(records) - 1) + d_unrelated * len(records)
        print(
            f"\nedited derivatives inside layouts ({len(sources)} registered photos, "
            f"{len(records)} in the matcher): found {sum(d_all)} of {len(d_all)} "
            f"({sum(d_all) / max(1, len(d_all)):.1%}); whole image only (anchor) "
            f"{sum(d_anchor) / max(1, len(d_anchor)):.1%}; false {d_false} over "
            f"{d_pairs:.3g} pairs (95% bound "
            f"{upper_bound(d_pairs) if d_false == 0 else float('nan'):.2g})"
        )
        for key in names_l:
            v = d_found[key]
            print(f"  {key:<14} {sum(v)} of {len(v)}")
        dc = [t * 1000 for t in d_cpu]
        dw = [t * 1000 for t in d_whole_cpu]
        print(
            f"derivative search CPU per scan (whole image, then up to 3 proposals): median "
            f"{statistics.median(dc):.0f} ms, p95 {pct(dc, 0.95):.0f} ms; the whole image "
            f"alone median {statistics.median(dw):.0f} ms, p95 {pct(dw, 0.95):.0f} ms"
        )
    print("load average at the end: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(f"machine yardstick (ORB on a 512 x 384 scene): {yardstick_ms():.1f} ms CPU")
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
