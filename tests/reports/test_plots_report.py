"""`patchcore plots-report` renders what `dvc plots` draws, from the repository's own committed plot data."""

import sys

import pytest
from PIL import Image

from patchcore.apps.reports import plots_report
from patchcore.errors import UsageError

from helpers import REPO, run_cli


def test_plots_diff_is_rendered_to_pngs_linked_from_markdown(tmp_path):
    out = tmp_path / "report"
    result = run_cli("plots-report", "HEAD", "--out", str(out), "--targets", "plots/overlay/roc", cwd=REPO)
    assert result.returncode == 0, result.stderr
    pictures = sorted(out.glob("*.png"))
    page = (out / "plots.md").read_text()
    assert len(pictures) >= 2 and all(f"]({p.name})" in page for p in pictures)
    assert "workspace vs HEAD" in page and "hazelnut_surface" in page
    for picture in pictures:
        with Image.open(picture) as image:
            assert (
                image.format == "PNG" and image.size[0] > 200 and len(image.getcolors(1 << 16) or range(1000)) > 8
            )  # a chart, not a blank


def test_without_vl_convert_the_fix_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "vl_convert", None)  # as if not installed: import raises ImportError
    with pytest.raises(UsageError, match=r"pip install -e '.\[report\]'"):
        plots_report.render([], tmp_path / "out", [])
    assert not (tmp_path / "out").exists()


def test_an_answer_without_data_plots_is_one_line():
    with pytest.raises(UsageError, match="without a 'data' object"):
        plots_report.vega_plots({"errors": []})
    assert (
        plots_report.vega_plots({"data": {"a.png": [{"type": "image", "revisions": ["workspace"], "url": "a.png"}]}})
        == []
    )
