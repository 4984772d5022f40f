"""The report's background-counterfactual section, from the runs' ``counterfactual`` artifacts.

Per model: the BG-gap with its interval, ORIGINAL against ONLY-FG, the share of the
CounterAnimal drop that swapping only the background recovers, and how each counter photo was
attributed; per class the counts of each attribution; a few thumbnails of each kind, the
counter photo beside its SWAP-TO-COMMON twin, so a reader sees what "background-caused" means.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from spurbench.report.thumbnails import Thumb, Thumbnailer

KINDS = ("background", "object", "robust")
KIND_TEXT = {
    "background": "background-caused: wrong on the counter photo, right once only its "
    "background is swapped to a common one",
    "object": "object-caused: wrong with either background",
    "robust": "robust: right on the counter photo",
}


def _pct(x: Any) -> str:
    return "–" if x is None or x != x else f"{100 * float(x):.1f}"


def _thumbs(rows: pd.DataFrame, make: Thumbnailer, k: int) -> list[Thumb]:
    out: list[Thumb] = []
    for r in rows.head(k).itertuples():
        for path, what, ok in (
            (r.path_original, "counter photo", r.correct_original),
            (r.path_swap_to_common, "swapped to common", r.correct_swap_to_common),
        ):
            uri = make("", str(path)) if path else None
            if uri is not None:
                mark = "✓" if bool(ok) else "✗"
                out.append(Thumb(uri, f"{what} {mark}", f"{r.image_id} · {what}", "counter"))
    return out


def counterfactual_views(
    artifacts: pd.DataFrame, runs: pd.DataFrame, *, thumbnails: bool = True, per_kind: int = 3
) -> list[dict[str, Any]]:
    """One view per run with a counterfactual artifact (``artifacts``: run_id, content)."""
    make = Thumbnailer()
    display = dict(zip(runs["run_id"], runs["display"], strict=True))
    views = []
    for run_id, content in zip(artifacts["run_id"], artifacts["content"], strict=True):
        art = json.loads(content) if isinstance(content, str) else content
        s = art["summary"]
        images = pd.DataFrame(art["images"])
        counter = images[images["group"] == "counter"]
        per_class = (
            counter.groupby("class_name")["attribution"].value_counts().unstack(fill_value=0)
            if not counter.empty
            else pd.DataFrame()
        )
        per_class = per_class.reindex(columns=list(KINDS), fill_value=0).reset_index()
        kinds = []
        for kind in KINDS:
            rows = counter[counter["attribution"] == kind]
            thumbs = _thumbs(rows, make, per_kind) if thumbnails and "path_original" in rows else []
            kinds.append({"kind": kind, "text": KIND_TEXT[kind], "n": len(rows), "thumbs": thumbs})
        views.append(
            {
                "model": display.get(run_id, run_id),
                "protocol": art.get("protocol", ""),
                "fill": art["fill"],
                "seed": art["seed"],
                "mask_sources": art.get("mask_sources", {}),
                "mask_counts": art["mask_counts"],
                "bg_gap": f"{_pct(s['bg_gap'])} [{_pct(s['bg_gap_ci_low'])}, "
                f"{_pct(s['bg_gap_ci_high'])}]",
                "original": _pct(s["acc_original"]),
                "only_fg": _pct(s["acc_only_fg"]),
                "only_bg": _pct(s.get("acc_only_bg_common")),
                "drop": _pct(s["drop"]),
                "explained": _pct(s["drop_explained"]),
                "counts": {k: int(s[f"n_{k}"]) for k in KINDS},
                "per_class": per_class.to_dict(orient="records"),
                "kinds": kinds,
            }
        )
    return views


def methods_text(views: list[dict[str, Any]]) -> str:
    """The Methods paragraph: where masks came from, how holes were filled, which seeds."""
    sources: dict[str, int] = {}
    for v in views:
        for k, n in v["mask_sources"].items():
            sources[k] = sources.get(k, 0) + n
    fills = sorted({v["fill"] for v in views})
    seeds = sorted({v["seed"] for v in views})
    flagged = sum(v["mask_counts"]["too_small"] + v["mask_counts"]["too_large"] for v in views)
    listed = ", ".join(f"{k} ({n})" for k, n in sorted(sources.items())) or "none"
    return (
        "Background counterfactuals follow Xiao et al. (ICLR 2021): ONLY-FG (object on black), "
        "NO-FG, ONLY-BG (the object's box filled from the background around it), MIXED-SAME / "
        "MIXED-RAND / MIXED-NEXT (the object on another image's ONLY-BG of its own, a random, "
        "the next class; a class's backgrounds are those of its common photos), and, added by "
        "spurbench, SWAP-TO-COMMON / SWAP-TO-COUNTER (the object on a common / counter photo's "
        "background of its class). BG-gap = acc(MIXED-SAME) − acc(MIXED-RAND), per image, with "
        "a paired percentile bootstrap over source images. A counter photo is background-caused "
        "when it is wrong and its SWAP-TO-COMMON is right, object-caused when both are wrong. "
        f"Mask sources (images): {listed}; masks covering under 1 % or over 90 % of the image "
        f"were not used ({flagged} flagged). Fill of the object box: {', '.join(fills)}. "
        f"Donor seeds: {', '.join(map(str, seeds))}."
    )
