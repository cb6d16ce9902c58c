"""`patchcore export`: a model folder -> model.onnx (and OpenVINO IR) that gives evaluate's numbers without this package."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from .errors import UsageError
from .export import onnx_file, parity
from .store import paths
from .store.atomic import atomic_path, write_json
from .store.output_set import output_set, settle


def _check_options(fmt: str, bank_precision: str, out: Path) -> None:
    if fmt not in onnx_file.FORMATS:
        raise UsageError(f"--format {fmt!r} is not known; use one of {', '.join(onnx_file.FORMATS)}")
    if bank_precision not in onnx_file.BANK_PRECISIONS:
        raise UsageError(f"--bank-precision {bank_precision!r} is not known; use one of {', '.join(onnx_file.BANK_PRECISIONS)}")
    onnx_file.optional("onnx", "patchcore export")
    onnx_file.optional("onnxruntime", "patchcore export")
    if fmt == "openvino":
        onnx_file.openvino("patchcore export --format openvino")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: is a file, not a folder; name a folder for model.onnx")


def main(
    model_dir: Path, out: Path, fmt: str = "onnx", bank_precision: str = "float32", scores_csv: Path | None = None, record: Path | None = None
) -> str:
    """Write out/model.onnx (with ``fmt`` openvino also model.xml + model.bin), checked against ``scores_csv``
    when given (its record into ``record``); every file is put in place together, or none."""
    _check_options(fmt, bank_precision, out)
    if record is not None and scores_csv is None:
        raise UsageError("--record needs --check SCORES_CSV: the record is the parity check's")
    if scores_csv is not None:
        settle([scores_csv])  # evaluate's set whole before its scores are the reference
    expected = None if scores_csv is None else parity.expected_scores(scores_csv)  # not evaluate's file: refused before the work
    files = [out / "model.onnx"] + ([out / "model.xml", out / "model.bin"] if fmt == "openvino" else []) + ([record] if record else [])
    with output_set(files), tempfile.TemporaryDirectory(prefix="patchcore-export-") as scratch:
        onnx_path = Path(scratch) / "model.onnx"
        meta = onnx_file.write_onnx(Path(model_dir), onnx_path, bank_precision)
        xml_path = None
        if fmt == "openvino":
            xml_path = Path(scratch) / "model.xml"
            onnx_file.write_openvino(onnx_path, xml_path)
        checked = None
        if scores_csv is not None:
            checked = parity.check(
                onnx_path,
                xml_path,
                paths.data_dir(str(meta["dataset"]), str(meta["category"])),
                scores_csv,
                bank_precision,
                out / "model.onnx",
                read=expected,
            )
        for name in ("model.onnx", "model.xml", "model.bin")[: 3 if fmt == "openvino" else 1]:
            with atomic_path(out / name, Path(name).suffix) as tmp:
                shutil.move(Path(scratch) / name, tmp)
        if record is not None and checked is not None:  # --record requires --check (refused above)
            keep = ("dataset", "category", "data", "backbone", "weights", "bank_rows", "bank_precision", "producer")
            write_json(record, {**{k: meta[k] for k in keep}, "file": str(out / "model.onnx"), "parity": parity.stable(checked)})
    size = (out / "model.onnx").stat().st_size / 2**20
    where = f" and OpenVINO IR {out / 'model.xml'}" if fmt == "openvino" else ""
    passed = "" if checked is None else f"; {parity.summary(checked)}"
    return f"wrote {out / 'model.onnx'} ({size:.1f} MiB: {meta['backbone']}, {meta['bank_rows']} bank patches, {meta['weights']}){where}{passed}"
