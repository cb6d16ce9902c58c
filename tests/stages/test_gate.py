"""The CI metric gate and the GitHub workflow."""

import json
import subprocess
import sys
from pathlib import Path

from patchcore.core.tables import gate, summarize

from helpers import REPO, run_cli


def test_gate_passes_within_tolerance_and_fails_on_a_worse_metric(tmp_path):
    committed = json.loads((REPO / "metrics/summary.json").read_text())
    backbone = next(k for k in committed if k != "dataset")
    category = next(k for k in committed[backbone] if k not in ("mean", "weights", "features"))
    base = tmp_path / "baseline.json"
    base.write_text(json.dumps(committed))
    same = run_cli("gate", str(base), str(base), cwd=REPO)
    assert same.returncode == 0 and "within 0.002" in same.stdout

    doctored = json.loads(json.dumps(committed))
    doctored[backbone][category]["pixel_auroc"] = round(committed[backbone][category]["pixel_auroc"] - 0.01, 6)
    worse = tmp_path / "worse.json"
    worse.write_text(json.dumps(doctored))
    result = run_cli("gate", str(worse), str(base), cwd=REPO)
    assert result.returncode == 1
    assert f"{backbone}.{category}.pixel_auroc" in result.stderr and "-0.0100" in result.stderr

    nudged = json.loads(json.dumps(committed))
    nudged[backbone][category]["pixel_auroc"] = committed[backbone][category]["pixel_auroc"] - 0.001
    assert gate(nudged, committed, 0.002) == []


def test_gate_fails_when_a_committed_metric_disappears():
    base = {"dataset": "x", "b": {"c": {"image_auroc": 0.9, "aupro": 0.8}, "mean": {"image_auroc": 0.9}}}
    now = {"dataset": "x", "b": {"c": {"image_auroc": 0.9}, "mean": {"image_auroc": 0.9}}}
    assert gate(now, base, 0.002) == ["b.c.aupro: committed 0.8, now missing"]


def lint(path: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "check-jsonschema"
    return subprocess.run(
        [str(exe), "--builtin-schema", "vendor.github-workflows", str(path)], capture_output=True, text=True
    )


def test_github_workflow_is_valid(tmp_path):
    workflow = REPO / ".github/workflows/pipeline.yml"
    assert lint(workflow).returncode == 0
    text = workflow.read_text()
    assert "dvc metrics diff" in text and "dvc params diff" in text and "cml comment" in text
    broken = tmp_path / "broken.yml"
    broken.write_text(text.replace("runs-on: ubuntu-latest", "runs_on: ubuntu-latest"))
    assert lint(broken).returncode != 0  # the linter does catch a wrong key


def test_the_plot_comment_step_is_also_in_ci_and_the_links_are_checked_monthly():
    import yaml

    pipeline = (REPO / ".github/workflows/pipeline.yml").read_text()
    assert "patchcore plots-report" in pipeline and "patchcore plots-report" in (REPO / ".ci/run").read_text()
    links = REPO / ".github/workflows/links.yml"
    assert lint(links).returncode == 0
    spec = yaml.safe_load(links.read_text())
    cron = spec[True]["schedule"][0]["cron"].split()  # YAML 1.1 reads the key 'on' as True
    assert cron[2] == "1" and cron[3] == "*" and "patchcore check-links" in links.read_text()


def test_gate_fails_when_a_committed_number_becomes_null_and_passes_a_null_that_stays():
    base = {"dataset": "x", "b": {"good_only": {"image_auroc": None, "aupro": None}, "c": {"image_auroc": 0.9}}}
    nulled = {
        "dataset": "x",
        "b": {
            "good_only": {"image_auroc": None, "aupro": None},
            "c": {"image_auroc": None, "null_reasons": {"image_auroc": "no good test images"}},
        },
    }
    assert gate(base, base, 0.002) == []  # the good-only category's nulls stay null: nothing to keep
    assert gate(nulled, base, 0.002) == ["b.c.image_auroc: committed 0.9, now null (no good test images)"]
    # a null that becomes a number is new information, not a regression
    assert (
        gate(
            {"dataset": "x", "b": {"good_only": {"image_auroc": 0.8, "aupro": None}, "c": {"image_auroc": 0.9}}},
            base,
            0.002,
        )
        == []
    )


def test_summary_keeps_nulls_with_their_reasons_and_averages_the_numbers():
    from patchcore.core.tables import summarize

    common = {
        "weights": "w",
        "features": {"patchsize": 3, "border": "zeros", "layer_weighting": "equal", "layer_dim": 8},
    }
    good_only = {
        **common,
        "image_auroc": None,
        "image_ap": None,
        "pixel_auroc": None,
        "aupro": None,
        "aupro_005": None,
        "full_size": {"pixel_auroc": None, "aupro": None, "aupro_005": None, "seg_f1": None},
        "threshold_metrics": {"f1": None, "false_reject_rate": 0.0},
        "null_reasons": {
            "image_auroc": "no defective test images",
            "image_ap": "no defective test images",
            "pixel_auroc": "no masks",
            "aupro": "no masks",
            "aupro_005": "no masks",
            "full_size": "no masks",
            "full_size.seg_f1": "no pixel threshold",
            "threshold_metrics.f1": "no defects",
        },
    }
    labelled = {
        **common,
        "image_auroc": 0.9,
        "image_ap": 0.95,
        "pixel_auroc": 0.8,
        "aupro": 0.7,
        "aupro_005": 0.4,
        "full_size": {"pixel_auroc": 0.81, "aupro": 0.69, "aupro_005": 0.39, "seg_f1": 0.3},
        "threshold_metrics": {"f1": 0.5, "false_reject_rate": 0.1},
    }
    summary = summarize("d", {"b": {"g": good_only, "l": labelled}})["b"]
    full = {"pixel_auroc": 0.81, "aupro": 0.69, "aupro_005": 0.39, "seg_f1": 0.3}
    means = {"image_auroc": 0.9, "image_ap": 0.95, "pixel_auroc": 0.8, "aupro": 0.7, "aupro_005": 0.4}
    assert summary["mean"] == {**means, "full_size": full}
    assert summary["l"]["full_size"] == full
    assert summary["g"]["image_auroc"] is None and summary["g"]["false_reject_rate"] == 0.0
    assert summary["g"]["null_reasons"] == {
        "image_auroc": "no defective test images",
        "image_ap": "no defective test images",
        "pixel_auroc": "no masks",
        "aupro": "no masks",
        "aupro_005": "no masks",
        "f1_at_threshold": "no defects",
        "full_size.pixel_auroc": "no masks",
        "full_size.aupro": "no masks",
        "full_size.aupro_005": "no masks",
        "full_size.seg_f1": "no pixel threshold",
    }
    assert "null_reasons" not in summary["l"]


def _loco(structural: float, logical: float) -> dict:
    kinds = {"structural_anomalies": structural, "logical_anomalies": logical}
    block = {
        k: {"image_auroc": v, "au_spro_005": round(v / 2, 6), "au_spro_03": round(v / 3, 6), "images": 3}
        for k, v in kinds.items()
    }
    block["mean"] = {
        m: (block["structural_anomalies"][m] + block["logical_anomalies"][m]) / 2 for m in block["logical_anomalies"]
    }
    return block


def test_the_summary_carries_each_benchmarks_figures_and_their_mean_over_categories():
    common = {"weights": "w", "features": {"patchsize": 3, "border": "zeros", "layer_weighting": "equal"}}
    loco = {
        "a": {**common, "image_auroc": 0.9, "mvtec_loco": _loco(0.8, 0.6)},
        "b": {**common, "image_auroc": 0.7, "mvtec_loco": _loco(0.9, 0.5)},
        "plain": {**common, "image_auroc": 0.5},  # no block: no key, and out of the benchmark's mean
    }
    summary = summarize("mvtec_loco", {"x": loco})["x"]
    assert summary["a"]["mvtec_loco"]["logical_anomalies"] == {
        "image_auroc": 0.6,
        "au_spro_005": 0.3,
        "au_spro_03": 0.2,
    }
    assert "mvtec_loco" not in summary["plain"] and "mvtec_ad2" not in summary["mean"]
    mean = summary["mean"]["mvtec_loco"]
    assert mean["structural_anomalies"]["image_auroc"] == 0.85 and mean["logical_anomalies"]["image_auroc"] == 0.55
    assert mean["mean"]["image_auroc"] == 0.7 and mean["mean"]["au_spro_005"] == 0.35
    ad2 = {
        "au_pro_005": 0.3,
        "au_pro_03": 0.6,
        "image_auroc_map_max": 0.8,
        "seg_f1": {
            "quantile": {"threshold": 2.0, "seg_f1": 0.2},
            "validation_mean_3std": {"threshold": 3.0, "seg_f1": 0.1},
        },
    }
    one = summarize("mvtec_ad2", {"x": {"can": {**common, "mvtec_ad2": ad2}}})["x"]
    expected = {"au_pro_005": 0.3, "au_pro_03": 0.6, "image_auroc_map_max": 0.8}
    expected |= {"seg_f1_quantile": 0.2, "seg_f1_validation_mean_3std": 0.1}
    assert one["can"]["mvtec_ad2"] == expected and one["mean"]["mvtec_ad2"] == expected
