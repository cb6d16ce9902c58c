"""`patchcore classes` and `patchcore backbones`: what is known, and what is on this machine."""

from __future__ import annotations

from pathlib import Path

from patchcore.config import Params
from patchcore.datasets.layout import is_data_name, list_split
from patchcore.datasets.sources import MVTEC
from patchcore.errors import UsageError


def classes(data: Path) -> str:
    lines = [f"MVTec AD classes ({len(MVTEC)}), source 'mvtec' (train/good, test good, test defective, defect types):"]
    for name, c in MVTEC.items():
        lines.append(f"  {name:<11} {c.train_good:>4} {c.test_good:>4} {c.test_defective:>4} {c.defect_types:>2}")
    lines.append(f"local categories under {data}/:")
    # a killed download's temporary folder (.<category>.<pid>.*.tmp) is not a category
    roots = sorted(
        p for p in data.glob("*/*") if is_data_name(p.name) and is_data_name(p.parent.name) and (p / "train").is_dir()
    )
    for root in roots:
        try:
            train, test = list_split(root, "train"), list_split(root, "test")
        except UsageError as exc:
            lines.append(f"  {root.relative_to(data)}: unusable ({exc})")
            continue
        defective = [s for s in test if s.label]
        lines.append(
            f"  {root.relative_to(data)}: {len(train)} train/good, {len(test) - len(defective)} test good, "
            f"{len(defective)} test defective, {sum(1 for s in defective if s.mask)} masks"
        )
    if not roots:
        lines.append("  none yet: run 'dvc repro' or 'patchcore download -c CATEGORY'")
    return "\n".join(lines)


def backbones(params: Params) -> str:
    # torch and the model libraries load here, not for `classes`, which only lists folders
    from patchcore import backbones as bb

    rows = [
        ("name", "architecture", "layers", "channels", "stride", "input", "patch grid x dim", "weights", "available")
    ]
    for name, s in params.backbones.items():
        geo = bb.geometry(s)
        status = bb.weights_status(s)
        rows.append(
            (
                name,
                s.arch,
                "+".join(s.layers),
                "+".join(map(str, geo.channels)),
                "/".join(map(str, geo.strides)),
                f"{s.resize}->{s.crop}",
                f"{geo.grid[0]}x{geo.grid[1]}x{s.target_dim}",
                status.source,
                "yes" if status.available else "no (download or set weights: PATH)",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)
