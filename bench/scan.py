"""Full scan cost per upload, one core: decode + PDQ + MD5/SHA-256 + every signal + match + policy.

Photos: Debian's wallpaper packages when installed (benign), else generated scenes, re-encoded
as ~0.8 MP JPEGs (1095 x 730, quality 88), the size the target names. Each photo goes through
the very pipeline `dignity scan` and `/v1/scan` run (``Scanner.scan``) against a bank of 10,000
random PDQ hashes; the per-signal times are the runner's own timings. Printed: the median ms
per component and in total (target <= 60 ms), the total against decode alone (the anchor every
hasher pays), and the provenance checks' cost on files that carry no C2PA or XMP data (target
< 2 ms) and on the C2PA fixtures (which do) when ../shared/fixtures is present.

    python bench/scan.py [--photos 24] [--rounds 3]
"""

from __future__ import annotations

import argparse
import glob
import os
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from PIL import Image
from threadpoolctl import threadpool_limits

from dignity.hashing.signals import decode_upload, hash_media
from dignity.matching import MatchEngine
from dignity.matching.banks import BankService, NewEntry
from dignity.samples import encode, landscape
from dignity.scanning import Scanner
from dignity.settings import Settings
from dignity.storage.db import open_database

SIZE = (1095, 730)
PROVENANCE = ("c2pa", "xmp", "generator")


def photos(limit: int) -> tuple[str, list[bytes]]:
    files = sorted(glob.glob("/usr/share/wallpapers/*/contents/images/*.jpg"))
    files += sorted(glob.glob("/usr/share/backgrounds/gnome/*.jpg"))
    if files:
        step = max(1, len(files) // limit)
        imgs = [Image.open(f).convert("RGB") for f in files[::step][:limit]]
        label = "Debian wallpapers"
    else:
        imgs = [landscape(seed, (1600, 1200)) for seed in range(limit)]
        label = "generated landscapes"
    return label, [
        encode(img.resize(SIZE, Image.Resampling.BICUBIC), "JPEG", quality=88) for img in imgs
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    label, datas = photos(args.photos)
    with tempfile.TemporaryDirectory() as tmp, threadpool_limits(1):
        url = f"sqlite:///{tmp}/bench.sqlite3"
        db = open_database(url)
        banks = BankService(db)
        banks.create_bank("bench", purpose="block")
        rnd = random.Random(7)
        banks.add_entries(
            "bench", [NewEntry("pdq", f"{rnd.getrandbits(256):064x}") for _ in range(10_000)]
        )
        engine = MatchEngine(db)
        engine.load()
        settings = Settings(database_url=url, data_dir=Path(tmp))
        scanner = Scanner(settings, engine)
        scanner.warm()
        parts: dict[str, list[float]] = defaultdict(list)
        for _ in range(args.rounds):
            for data in datas:
                t0 = time.perf_counter()
                media = decode_upload(data, settings)
                t1 = time.perf_counter()
                hash_media(media, data)
                t2 = time.perf_counter()
                result = scanner.scan(data)
                t3 = time.perf_counter()
                parts["decode"].append((t1 - t0) * 1000)
                parts["hashes (PDQ, MD5, SHA-256)"].append((t2 - t1) * 1000)
                parts["total scan"].append((t3 - t2) * 1000)
                for p in result.analysis.signals["plugins"]:
                    parts[f"signal {p['name']}"].append(p["ms"])
                parts["provenance, no C2PA/XMP data"].append(
                    sum(
                        p["ms"]
                        for p in result.analysis.signals["plugins"]
                        if p["name"] in PROVENANCE
                    )
                )
        print(
            f"Full scan, one core, {len(datas)} {label} at {SIZE[0]}x{SIZE[1]} JPEG q88, "
            f"{args.rounds} rounds; bank of 10,000 PDQ hashes"
        )
        print(f"{'component':36} {'median ms':>10} {'p90 ms':>8}")
        for name, values in parts.items():
            values.sort()
            p90 = values[int(0.9 * (len(values) - 1))]
            print(f"{name:36} {statistics.median(values):10.2f} {p90:8.2f}")
        total = statistics.median(parts["total scan"])
        decode = statistics.median(parts["decode"])
        print(
            f"\ntotal {total:.1f} ms per image (target <= 60): "
            f"{'OK' if total <= 60 else 'MISSED'}; total / decode alone = {total / decode:.2f}"
        )
        prov = statistics.median(parts["provenance, no C2PA/XMP data"])
        print(
            f"c2pa + xmp + generator on files without such data: {prov:.3f} ms (target < 2): "
            f"{'OK' if prov < 2 else 'MISSED'}"
        )
        fixtures = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "c2pa"
        if fixtures.is_dir():
            print("\nfiles that carry C2PA data (../shared/fixtures/c2pa), ms per check:")
            for f in sorted(fixtures.glob("*.jpg")):
                sig = scanner.scan(f.read_bytes()).analysis.signals
                ms = {p["name"]: p["ms"] for p in sig["plugins"]}
                state = (sig.get("c2pa") or {}).get("state")
                print(
                    f"  {f.name:24} c2pa {ms.get('c2pa', 0):7.2f}  xmp {ms.get('xmp', 0):5.2f}"
                    f"  state={state}"
                )
        db.close()


if __name__ == "__main__":
    main()
