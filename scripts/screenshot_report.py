"""Render a spurbench report to PNG screenshots with headless Chromium (for the README / docs).

Usage:

    python scripts/screenshot_report.py REPORT.html --out docs/ [--parts 3]
    python scripts/screenshot_report.py --store spurbench.duckdb --out docs/   # build, then shoot

Writes ``report_screenshot_1.png`` … ``_N.png``: consecutive slices of the page starting at the
sections named in ``--sections`` (default: the top, the per-class drops, the examples). Each
file is kept under ``--max-kb`` by reducing it to an adaptive palette when needed, because the
screenshots live in the git repository.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.browser import open_report  # the test suite's Chromium driver

DEFAULT_SECTIONS = ("", "#class-drops", "#examples")


def _fit_size(png: bytes, max_kb: int) -> bytes:
    """The PNG itself if small enough, else a 256-colour (then 128, 64) version of it."""
    if len(png) <= max_kb * 1024:
        return png
    im = Image.open(io.BytesIO(png)).convert("RGB")
    out = png
    for colours in (256, 128, 64):
        buf = io.BytesIO()
        im.quantize(colours, method=Image.Quantize.MEDIANCUT).save(buf, "PNG", optimize=True)
        out = buf.getvalue()
        if len(out) <= max_kb * 1024:
            break
    return out


def screenshot(
    html: Path,
    out: Path,
    *,
    sections: tuple[str, ...] = DEFAULT_SECTIONS,
    width: int = 1280,
    height: int = 1500,
    max_kb: int = 390,
    prefix: str = "report_screenshot",
) -> list[Path]:
    """One screenshot of ``height`` CSS pixels per section start (``""`` = top of the page)."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with open_report(html, width=width, height=height) as page:
        total = page.evaluate("document.documentElement.scrollHeight")
        for i, selector in enumerate(sections, start=1):
            top = 0
            if selector:
                found = page.query_selector(selector)
                if found is None:
                    print(f"skipping {selector}: not in this report", file=sys.stderr)
                    continue
                top = int(page.evaluate("(e) => e.getBoundingClientRect().top + scrollY", found))
            clip = {"x": 0, "y": top, "width": width, "height": max(1, min(height, total - top))}
            png = page.screenshot(full_page=True, clip=clip)
            target = out / f"{prefix}_{i}.png"
            target.write_bytes(_fit_size(png, max_kb))
            written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("html", nargs="?", type=Path, help="index.html of a report")
    ap.add_argument("--store", type=Path, help="build the report of this store first")
    ap.add_argument("--report-dir", type=Path, default=Path("spurbench_out/report"))
    ap.add_argument("--out", type=Path, default=Path("docs"))
    ap.add_argument(
        "--sections",
        default=",".join(DEFAULT_SECTIONS),
        help="comma list of CSS selectors where slices start ('' = page top)",
    )
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=1500)
    ap.add_argument("--max-kb", type=int, default=390)
    args = ap.parse_args(argv)
    html = args.html
    if args.store is not None:
        from spurbench.report.html import build_report

        html = build_report(args.store, args.report_dir).html
    if html is None:
        ap.error("give a report's index.html or --store")
    for path in screenshot(
        html,
        args.out,
        sections=tuple(args.sections.split(",")),
        width=args.width,
        height=args.height,
        max_kb=args.max_kb,
    ):
        print(f"wrote {path} ({path.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
