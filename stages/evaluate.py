"""Stage `evaluate`: score held-out and test images against the bank; metrics, threshold, pictures.

python -m stages.evaluate --category C --backbone B   (also: patchcore evaluate)
"""

from __future__ import annotations

from pathlib import Path

import typer

from patchcore import command, config
from patchcore.config import Params

app = command.stage_app(__doc__)


@app.command()
def evaluate(
    category: str = command.CATEGORY, backbone: str = command.BACKBONE, params_file: Path = command.PARAMS
) -> None:
    """Score the test images against the bank; write metrics/<dataset>/<backbone>/<category>.json."""
    typer.echo(main(config.load(params_file), category, backbone))


def main(params: Params, category: str, backbone: str) -> str:
    # the library loads when the stage runs: `--help` and the CLI's other commands start at once
    from patchcore.datasets.layout import read_provenance
    from patchcore.engines import settings as engine_settings
    from patchcore.pipeline.evaluation import (
        check_features,
        choose_thresholds,
        metrics_record,
        model_card,
    )
    from patchcore.pipeline.pictures import decided, write_plots
    from patchcore.pipeline.pixel_metrics import pixel_metrics
    from patchcore.pipeline.protocols import owners_figures
    from patchcore.pipeline.scored import score
    from patchcore.runtime.patchcore_onnx import CONNECTIVITY
    from patchcore.store import decisions, paths
    from patchcore.store.atomic import write_json
    from patchcore.store.model_folder import ModelFolder, fingerprint
    from patchcore.store.output_set import output_set

    bb = params.backbone(backbone)
    params.category(category)
    dataset, settings = params.run.dataset, params.evaluate
    folder = ModelFolder.of(dataset, category, backbone)
    folder.require((folder.train, folder.test, folder.bank), "run the extract and coreset stages first (dvc repro)")
    data_root = paths.data_dir(dataset, category)
    described = params.aggregation.describe(bb.feature_dim)
    check_features(folder, fingerprint(bb, "", described, (0, 0), params.extract.precision, dataset, category))
    out = paths.metrics_file(dataset, category, backbone)
    files, folders = paths.evaluate_outputs(dataset, category, backbone)
    with output_set(files, folders):  # every output reserved now, all put in place together at the end
        scored = score(folder, bb, settings, engine_settings.from_env())
        chosen, pixel_rule, reasons = choose_thresholds(scored, settings.threshold)
        pixel = pixel_metrics(scored, data_root, bb, settings, None if pixel_rule is None else pixel_rule["threshold"])
        record = metrics_record(scored, bb, settings, pixel, chosen, pixel_rule, read_provenance(data_root), reasons)
        source, quantile = record["data"].get("source"), settings.threshold.pixel_quantile
        record.update(owners_figures(source, scored, data_root, quantile, pixel.full_size, settings.max_fpr))
        threshold = None if chosen is None else chosen["threshold"]
        pixel_threshold = None if pixel_rule is None else pixel_rule["threshold"]
        title = f"{record['dataset']}/{record['category']} x {bb.name} ({record['weights']})"
        plots, pictures = paths.plots_dir(dataset, category, backbone), paths.pictures_dir(dataset, category, backbone)
        write_plots(plots, pictures, title, scored, pixel, data_root, bb, record, threshold)
        why = {
            "threshold": record["null_reasons"].get("threshold_metrics"),
            "pixel_threshold": record["null_reasons"].get("pixel_threshold"),
        }
        levels = {"threshold": threshold, "pixel_threshold": pixel_threshold, "connectivity": CONNECTIVITY}
        decisions.write_decisions(
            plots, pictures, decided(scored, bb, threshold, pixel_threshold), len(scored.paths), levels, why
        )
        folder.write_card(model_card(scored, record, bb, settings))
        write_json(out, record)
    return _said(f"{dataset}/{category} x {backbone}", record, chosen, out)


def _said(name: str, record: dict, chosen: dict | None, out: Path) -> str:
    """What the stage prints: the AUROCs, the threshold and its false-reject rate, and any warning."""
    lines = [
        f"{name}: image AUROC {record['image_auroc']}, pixel AUROC {record['pixel_auroc']}, AUPRO {record['aupro']} -> {out}"
    ]
    if "mvtec_loco" in record:
        loco = record["mvtec_loco"]
        lines.append(
            "MVTec LOCO AD: "
            + ", ".join(
                f"{kind} image AUROC {loco[kind]['image_auroc']}, AU-sPRO@0.05 {loco[kind]['au_spro_005']}"
                for kind in ("structural_anomalies", "logical_anomalies", "mean")
            )
        )
    if "mvtec_ad2" in record and "seg_f1" in record["mvtec_ad2"]:
        ad2 = record["mvtec_ad2"]
        f1 = ", ".join(f"{k} {v['seg_f1']}" for k, v in ad2["seg_f1"].items())
        lines.append(f"MVTec AD 2 test_public: AU-PRO@0.05 {ad2['au_pro_005']}, SegF1 ({f1})")
    if chosen is not None:
        frr = record["threshold_metrics"]["false_reject_rate"]
        lines.append(
            f"threshold {chosen['threshold']} ({chosen['method']}, from {chosen['scores_from']} scores); false-reject rate on test/good {frr}"
        )
        if "warning" in chosen:
            lines.append(f"warning: {chosen['warning']}")
    if "note" in record["reweighting"]:
        lines.append(f"warning: {record['reweighting']['note']}")
    return "\n".join(lines)


if __name__ == "__main__":
    command.run(app)
