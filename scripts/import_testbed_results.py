"""Extract imagenet-testbed's published ImageNet / distribution-shift results into a reference CSV.

imagenet-testbed (modestyachts/imagenet-testbed, Taori et al., NeurIPS 2020) publishes
``robustness_top1s.csv``: the top-1 accuracy of ~340 models on ~200 test sets, among them
ObjectNet, which timm does not evaluate. spurbench ships six of its columns, with each model's
type from the testbed's own metadata (``plotting/model_types.py``), as
``src/spurbench/reference/testbed_results.csv``: the ImageNet-model baseline of effective
robustness on ObjectNet and of the five-shift mean (see ``SOURCES.md`` there).

Usage (the committed CSV was made with the first form; SOURCES.md names the commit):

    python scripts/import_testbed_results.py --git-dir path/to/imagenet-testbed.git \\
        --rev 0170eec658d664289d9f61de8f90f967f49abca0
    python scripts/import_testbed_results.py --from path/to/imagenet-testbed
    python scripts/import_testbed_results.py --from DIR --check   # compare, write nothing

Rules, kept here so that a re-import is mechanical:

* one row per model, in the order of ``robustness_top1s.csv`` (the testbed sorts it by ImageNet
  top-1); accuracies are copied as text, exactly as published (percent);
* ``model_type`` is the name of the model's ``ModelTypes`` member in ``model_types_map``
  (``STANDARD``, ``MORE_DATA``, ``ROBUST_INTV``, ...), read from the file's syntax tree without
  running it, including the entries its ``for i in range(N)`` loops add; a model the metadata
  does not list gets an empty type, so it never enters the baseline;
* ImageNetV2 is the ``imagenetv2-matched-frequency-format-val`` column, the release spurbench
  reads (the older ``imagenetv2-matched-frequency`` column differs by up to 0.8 points).
"""

from __future__ import annotations

import ast
import csv
import io
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # also when loaded by file path
import _reference_import as shared
from _reference_import import folder_reader, git_reader

RESULTS = "robustness_top1s.csv"
METADATA = "plotting/model_types.py"
#: Output column -> testbed column (names as in timm_results.csv, so one mapping serves both).
COLUMNS: dict[str, str] = {
    "imagenet_top1": "val",
    "imagenetv2_top1": "imagenetv2-matched-frequency-format-val",
    "sketch_top1": "imagenet-sketch",
    "imagenet_r_top1": "imagenet-r",
    "imagenet_a_top1": "imagenet-a",
    "objectnet_top1": "objectnet-1.0-beta",
}
OUTPUT: tuple[str, ...] = ("model", "model_type", *COLUMNS)
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src/spurbench/reference/testbed_results.csv"


def model_types(source: str) -> dict[str, str]:
    """``model_types_map`` of ``model_types.py``: model name -> ModelTypes member name."""
    tree = ast.parse(source)
    types: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and _target(node) == "model_types_map":
            if not isinstance(node.value, ast.Dict):
                raise ValueError("model_types_map is not a dict literal")
            for key, value in zip(node.value.keys, node.value.values, strict=True):
                if not (isinstance(key, ast.Constant) and isinstance(value, ast.Attribute)):
                    raise ValueError(f"unexpected entry at line {value.lineno}")
                types[str(key.value)] = value.attr
        elif isinstance(node, ast.For):
            types.update(_loop_entries(node))
    if not types:
        raise ValueError("no model_types_map found")
    return types


def _target(node: ast.Assign) -> str | None:
    return node.targets[0].id if isinstance(node.targets[0], ast.Name) else None


def _loop_entries(node: ast.For) -> dict[str, str]:
    """``for i in range(N): model_types_map[f"...{i}..."] = ModelTypes.X``, expanded."""
    it = node.iter
    if not (
        isinstance(node.target, ast.Name)
        and isinstance(it, ast.Call)
        and getattr(it.func, "id", None) == "range"
        and len(it.args) == 1
        and isinstance(it.args[0], ast.Constant)
        and len(node.body) == 1
        and isinstance(node.body[0], ast.Assign)
    ):
        return {}
    assign = node.body[0]
    target = assign.targets[0]
    if not (
        isinstance(target, ast.Subscript)
        and getattr(target.value, "id", None) == "model_types_map"
        and isinstance(target.slice, ast.JoinedStr)
        and isinstance(assign.value, ast.Attribute)
    ):
        raise ValueError(f"unexpected loop at line {node.lineno}")
    out = {}
    for i in range(int(it.args[0].value)):
        parts = []
        for part in target.slice.values:
            if isinstance(part, ast.Constant):
                parts.append(str(part.value))
            elif isinstance(part, ast.FormattedValue) and getattr(part.value, "id", None) == (
                node.target.id
            ):
                parts.append(str(i))
            else:
                raise ValueError(f"unexpected f-string at line {node.lineno}")
        out["".join(parts)] = assign.value.attr
    return out


def extract(read: Callable[[str], str]) -> list[dict[str, str]]:
    """The rows (all values as text), reading the testbed's files through ``read(path)``."""
    types = model_types(read(METADATA))
    reader = csv.DictReader(io.StringIO(read(RESULTS)))
    missing = set(COLUMNS.values()) - set(reader.fieldnames or ())
    if missing:
        raise ValueError(f"{RESULTS} lacks columns {sorted(missing)}")
    rows, seen = [], set()
    for rec in reader:
        if rec["model"] in seen:
            raise ValueError(f"{RESULTS}: {rec['model']} listed twice")
        seen.add(rec["model"])
        row = {"model": rec["model"], "model_type": types.get(rec["model"], "")}
        row.update({out: rec[col] for out, col in COLUMNS.items()})
        rows.append(row)
    return rows


def to_csv(rows: list[dict[str, str]]) -> str:
    """The committed file's text (reproducible byte for byte)."""
    return shared.to_csv(rows, OUTPUT)


def main(argv: list[str] | None = None) -> int:
    ap = shared.parser(__doc__.split("\n\n")[0], "imagenet-testbed's files", DEFAULT_OUT)
    args = ap.parse_args(argv)

    if args.git_dir is not None:
        read = git_reader(args.git_dir, args.rev)
        print(shared.provenance(args.git_dir, args.rev, [RESULTS, METADATA]))
    else:
        read = folder_reader(args.folder)
    rows = extract(read)
    typed: dict[str, int] = {}
    for r in rows:
        typed[r["model_type"] or "(none)"] = typed.get(r["model_type"] or "(none)", 0) + 1
    print(f"{len(rows)} models; by type: {typed}")
    return shared.write_or_check(to_csv(rows), args.out, args.check)


if __name__ == "__main__":
    sys.exit(main())
