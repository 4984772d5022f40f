"""Regenerate tests/golden/data/demo_seed0.json by hand (review the diff before committing).

    PYTHONPATH=src python tests/golden/make_golden.py [--out FOLDER]

Runs ``spurbench demo`` with its defaults (seed 0) into FOLDER (a temporary folder if not
given; an existing demo folder reuses its world and models) and writes every stored number.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from spurbench.cli import app
from tests.golden.golden import GOLDEN, demo_numbers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="spurbench_golden_"))
    res = CliRunner().invoke(app, ["demo", "--out", str(out), "--quiet"], terminal_width=200)
    if res.exit_code != 0:
        sys.exit(res.output)
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(json.dumps(demo_numbers(out), indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN} from {out}")


if __name__ == "__main__":
    main()
