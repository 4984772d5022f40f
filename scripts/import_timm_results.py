"""Join timm's published ImageNet / distribution-shift results into one compact reference CSV.

timm (huggingface/pytorch-image-models) publishes, in its ``results/`` folder, one CSV per test
set with the top-1 / top-5 accuracy of every pretrained model with an ImageNet-1k head. spurbench
ships the top-1 columns of five of them, joined into ``src/spurbench/reference/timm_results.csv``,
as the ImageNet-trained baseline of effective robustness (see ``SOURCES.md`` there).

Usage (the committed CSV was made with the first form; SOURCES.md names the commit):

    python scripts/import_timm_results.py \\
        --git-dir /work/.mirror/huggingface+pytorch-image-models/repo --rev HEAD
    python scripts/import_timm_results.py --from path/to/pytorch-image-models/results
    python scripts/import_timm_results.py --from DIR --check   # compare, write nothing

Rules, kept here so that a re-import is mechanical:

* the join key is (model, img_size): timm evaluates some weights at two resolutions and lists
  both rows (its own ``generate_csv_results.py`` joins on the same pair);
* the rows are the union of the keys of all five files (outer join), in the order of
  ``results-imagenet.csv`` (timm sorts it by top-1), then keys found only in a shift file, in
  file order; a test set a key is missing from is left empty (NaN when read by pandas);
* accuracies are copied as text, exactly as published (percent, three decimals); ``param_count``
  (millions) loses timm's thousands separator ("1,014.45" -> "1014.45"); ``crop_pct`` and
  ``param_count`` must agree across files for a key, else the import stops.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # also when loaded by file path
import _reference_import as shared
from _reference_import import folder_reader

#: Output column -> timm results file (under ``results/``).
FILES: dict[str, str] = {
    "imagenet_top1": "results-imagenet.csv",
    "imagenetv2_top1": "results-imagenetv2-matched-frequency.csv",
    "sketch_top1": "results-sketch.csv",
    "imagenet_r_top1": "results-imagenet-r.csv",
    "imagenet_a_top1": "results-imagenet-a.csv",
}
META = ("crop_pct", "param_count")
COLUMNS: tuple[str, ...] = ("model", "img_size", *META, *FILES)
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src/spurbench/reference/timm_results.csv"

Key = tuple[str, str]


def _param_count(text: str) -> str:
    """timm formats param_count with ``{:,.2f}``; drop the separator so the column is numeric."""
    return text.replace(",", "")


def join(read: Callable[[str], str]) -> list[dict[str, str]]:
    """The joined rows (all values as text), reading each timm file through ``read(name)``."""
    rows: dict[Key, dict[str, str]] = {}
    for column, name in FILES.items():
        seen: set[Key] = set()
        for rec in csv.DictReader(io.StringIO(read(name))):
            key = (rec["model"], rec["img_size"])
            if key in seen:
                raise ValueError(f"{name}: {key} listed twice")
            seen.add(key)
            meta = {"crop_pct": rec["crop_pct"], "param_count": _param_count(rec["param_count"])}
            row = rows.get(key)
            if row is None:
                row = rows[key] = {"model": key[0], "img_size": key[1], **meta}
                row.update(dict.fromkeys(FILES, ""))
            elif any(row[m] != meta[m] for m in META):
                raise ValueError(f"{name}: {key} has {meta}, other files {row}")
            row[column] = rec["top1"]
    return list(rows.values())


def to_csv(rows: list[dict[str, str]]) -> str:
    """The committed file's text (reproducible byte for byte)."""
    return shared.to_csv(rows, COLUMNS)


def git_reader(git_dir: Path, rev: str) -> shared.Reader:
    """Read the files at ``rev`` from a (bare) clone, without a work tree."""
    return shared.git_reader(git_dir, rev, "results/")


def main(argv: list[str] | None = None) -> int:
    ap = shared.parser(__doc__.split("\n\n")[0], "timm's results/ folder", DEFAULT_OUT)
    args = ap.parse_args(argv)

    if args.git_dir is not None:
        read = git_reader(args.git_dir, args.rev)
        paths = [f"results/{name}" for name in FILES.values()]
        print(shared.provenance(args.git_dir, args.rev, paths))
    else:
        read = folder_reader(args.folder)
    rows = join(read)
    filled = {c: sum(bool(r[c]) for r in rows) for c in FILES}
    print(f"{len(rows)} rows, {len({r['model'] for r in rows})} models; non-empty: {filled}")
    return shared.write_or_check(to_csv(rows), args.out, args.check)


if __name__ == "__main__":
    sys.exit(main())
