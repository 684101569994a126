"""Refresh the documentation's screenshots from the browser tests' artifacts.

``make screenshots`` runs the end-to-end takedown test and the intake page test in Chromium on
SQLite (they save full-page PNGs under ``tests/artifacts/``), then this script copies the
pages the reviewer guide (``docs/reviewer-guide.md``) shows into ``docs/screenshots/``, cut to
at most 2,200 px tall, at most 1,000 px wide and reduced to 128 colours so the repository stays
small. Every picture is of synthetic
test content: generated landscapes, invented names.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PAGES = {
    "takedown-intake": "takedown-intake",
    "e2e-1-receipt": "takedown-receipt",
    "e2e-2-review-blurred": "review-item-blurred",
    "e2e-3-review-decided": "review-decided",
    "e2e-4-statement": "statement",
    "e2e-5-status-removed": "takedown-status-removed",
    "e2e-6-report": "transparency-report",
}


def main() -> None:
    source, target = ROOT / "tests" / "artifacts", ROOT / "docs" / "screenshots"
    target.mkdir(parents=True, exist_ok=True)
    for artifact, name in PAGES.items():
        image = Image.open(source / f"{artifact}.png").convert("RGB")
        if image.height > 2200:
            image = image.crop((0, 0, image.width, 2200))
        if image.width > 1000:
            image = image.resize((1000, round(image.height * 1000 / image.width)), Image.LANCZOS)
        out = target / f"{name}.png"
        image.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
        print(out.relative_to(ROOT), image.size)


if __name__ == "__main__":
    main()
