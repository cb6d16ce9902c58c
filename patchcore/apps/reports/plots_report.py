"""`patchcore plots-report`: `dvc plots diff` as PNG pictures and a markdown page, offline.

DVC renders its plots as Vega-Lite specifications for a browser; a pull-request comment needs
pictures. vl-convert renders the same specifications without a browser or a network, so the
CI comment shows exactly what `dvc plots diff` would draw.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from patchcore.apps.reports.dvc_json import dvc_json
from patchcore.errors import UsageError
from patchcore.store.atomic import atomic_dir


def _renderer():
    try:
        import vl_convert
    except ImportError:
        raise UsageError("rendering plots needs vl-convert-python: pip install -e '.[report]'") from None
    return vl_convert


def _slug(plot_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", plot_id).strip("_") or "plot"


def vega_plots(answer: object) -> list[tuple[str, list[str], dict]]:
    """(plot id, revisions, Vega-Lite spec with its data) of every data plot in a `dvc plots ... --json` answer."""
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, dict):
        raise UsageError("'dvc plots' answered without a 'data' object; is this a DVC project with plots in dvc.yaml?")
    found = []
    defined = {plot_id.partition("::")[2] for plot_id in data if "::" in plot_id}
    for plot_id, entries in sorted(data.items()):
        if plot_id in defined:  # a target given as a path comes back twice: as dvc.yaml defines it, and raw
            continue
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict) and entry.get("type") == "vega" and isinstance(entry.get("content"), dict):
                found.append((plot_id, list(entry.get("revisions", [])), entry["content"]))
    return found


def render(revisions: list[str], out: Path, targets: list[str]) -> str:
    """Render the plots of the workspace against ``revisions`` (none: the workspace alone) into ``out``."""
    vl_convert = _renderer()
    # diff takes revisions as positionals and plots as --targets; show takes the plots as positionals
    args = (
        ["plots", "diff", *revisions, *(["--targets", *targets] if targets else [])]
        if revisions
        else ["plots", "show", *targets]
    )
    with tempfile.TemporaryDirectory() as scratch:  # dvc writes image plots there; only the data plots are drawn
        plots = vega_plots(dvc_json(*args, "--out", scratch))
    if not plots:
        raise UsageError(
            f"'dvc {' '.join(args)}' found no data plots to render; check dvc.yaml's plots and the targets"
        )
    lines = [f"## Plots: workspace{' vs ' + ', '.join(revisions) if revisions else ''}", ""]
    with atomic_dir(out) as tmp:
        for i, (plot_id, revs, spec) in enumerate(plots):
            name = f"{i:03d}_{_slug(plot_id)}.png"
            (tmp / name).write_bytes(vl_convert.vegalite_to_png(spec, scale=1))
            lines += [f"**{plot_id}** ({', '.join(revs)})", "", f"![{plot_id}]({name})", ""]
        (tmp / "plots.md").write_text("\n".join(lines))
    return f"{len(plots)} plots rendered into {out}/ ({out / 'plots.md'} links them)"
