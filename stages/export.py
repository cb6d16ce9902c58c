"""Stage `export`: one self-contained model file (backbone, memory bank and scoring in one ONNX graph), checked
against evaluate's scores.

    python -m stages.export MODEL_FOLDER --out FOLDER [--format onnx|openvino] [--check scores.csv]
    (also: patchcore export)
"""

from __future__ import annotations

from pathlib import Path

import typer

from patchcore import command

app = command.stage_app(__doc__)


@app.command()
def export(
    model: Path = typer.Argument(..., help="model folder: features/<dataset>/<category>/<backbone>"),
    out: Path = typer.Option(
        ..., "--out", help="folder for model.onnx (and model.xml + model.bin with --format openvino)"
    ),
    fmt: str = typer.Option("onnx", "--format", help="onnx, or openvino: the ONNX file and its OpenVINO IR"),
    bank_precision: str = typer.Option(
        "float32", "--bank-precision", help="float32, or float16: the memory bank in half the bytes"
    ),
    check: Path = typer.Option(
        None, "--check", help="evaluate's scores.csv: fail unless the file gives those scores on those test images"
    ),
    record: Path = typer.Option(None, "--record", help="write the check's figures (JSON) here"),
) -> None:
    """One self-contained model file: the backbone, the memory bank and the scoring in one ONNX graph."""
    typer.echo(main(model, out, fmt, bank_precision, check, record))


def _check_options(fmt: str, bank_precision: str, out: Path) -> None:
    from patchcore.errors import UsageError
    from patchcore.export import onnx_file

    if fmt not in onnx_file.FORMATS:
        raise UsageError(f"--format {fmt!r} is not known; use one of {', '.join(onnx_file.FORMATS)}")
    if bank_precision not in onnx_file.BANK_PRECISIONS:
        raise UsageError(
            f"--bank-precision {bank_precision!r} is not known; use one of {', '.join(onnx_file.BANK_PRECISIONS)}"
        )
    onnx_file.optional("onnx", "patchcore export")
    onnx_file.optional("onnxruntime", "patchcore export")
    if fmt == "openvino":
        onnx_file.openvino("patchcore export --format openvino")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: is a file, not a folder; name a folder for model.onnx")


def main(
    model_dir: Path,
    out: Path,
    fmt: str = "onnx",
    bank_precision: str = "float32",
    scores_csv: Path | None = None,
    record: Path | None = None,
) -> str:
    """Write out/model.onnx (with ``fmt`` openvino also model.xml + model.bin), checked against ``scores_csv``
    when given (its record into ``record``); every file is put in place together, or none."""
    # the library loads when the stage runs: `--help` and the CLI's other commands start at once
    import tempfile

    from patchcore.errors import UsageError
    from patchcore.export import parity
    from patchcore.store.atomic import write_json
    from patchcore.store.output_set import output_set, settle

    _check_options(fmt, bank_precision, out)
    if record is not None and scores_csv is None:
        raise UsageError("--record needs --check SCORES_CSV: the record is the parity check's")
    if scores_csv is not None:
        settle([scores_csv])  # evaluate's set whole before its scores are the reference
    # not evaluate's file: refused before the work
    expected = None if scores_csv is None else parity.expected_scores(scores_csv)
    files = [out / "model.onnx"] + ([out / "model.xml", out / "model.bin"] if fmt == "openvino" else [])
    with (
        output_set(files + ([record] if record else [])),
        tempfile.TemporaryDirectory(prefix="patchcore-export-") as scratch,
    ):
        meta, checked = _write(Path(model_dir), out, Path(scratch), fmt, bank_precision, scores_csv, expected)
        if record is not None and checked is not None:  # --record requires --check (refused above)
            keep = ("dataset", "category", "data", "backbone", "weights", "bank_rows", "bank_precision", "producer")
            parity_record = {"file": str(out / "model.onnx"), "parity": parity.stable(checked)}
            write_json(record, {**{k: meta[k] for k in keep}, **parity_record})
    size = (out / "model.onnx").stat().st_size / 2**20
    where = f" and OpenVINO IR {out / 'model.xml'}" if fmt == "openvino" else ""
    passed = "" if checked is None else f"; {parity.summary(checked)}"
    what = f"{size:.1f} MiB: {meta['backbone']}, {meta['bank_rows']} bank patches, {meta['weights']}"
    return f"wrote {out / 'model.onnx'} ({what}){where}{passed}"


def _write(model_dir: Path, out: Path, scratch: Path, fmt: str, bank_precision: str, scores_csv, expected):
    """The files written in ``scratch``, checked against ``scores_csv`` (read as ``expected``), moved to ``out``."""
    import shutil

    from patchcore.export import onnx_file, parity
    from patchcore.store import paths
    from patchcore.store.atomic import atomic_path

    meta = onnx_file.write_onnx(model_dir, scratch / "model.onnx", bank_precision)
    xml_path = None
    if fmt == "openvino":
        xml_path = scratch / "model.xml"
        onnx_file.write_openvino(scratch / "model.onnx", xml_path)
    checked = None
    if scores_csv is not None:
        data = paths.data_dir(str(meta["dataset"]), str(meta["category"]))
        checked = parity.check(
            scratch / "model.onnx", xml_path, data, scores_csv, bank_precision, out / "model.onnx", read=expected
        )
    for name in ("model.onnx", "model.xml", "model.bin")[: 3 if fmt == "openvino" else 1]:
        with atomic_path(out / name, Path(name).suffix) as tmp:
            shutil.move(scratch / name, tmp)
    return meta, checked


if __name__ == "__main__":
    command.run(app)
