"""MVTec AD 2, VisA and MVTec LOCO AD taken from their owners' archives (tiny replicas) into the project's layout."""

import dataclasses
import json

import numpy as np
import pytest
import replicas
from PIL import Image

from patchcore.config import DatasetSpec
from patchcore.datasets import materialise, sources
from patchcore.datasets.fetch import file_sha256
from patchcore.datasets.layout import list_split, read_provenance
from patchcore.datasets.mvtec_ad2 import OBJECTS

from helpers import assert_usage_error, edit_params, files_under, run_cli
from httpserver import ArchiveServer

BUILD = {"mvtec_ad2": replicas.mvtec_ad2, "visa": replicas.visa, "mvtec_loco": replicas.mvtec_loco}
CATEGORY = {"mvtec_ad2": "sheet_metal", "visa": "candle", "mvtec_loco": "pushpins"}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PATCHCORE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize("source", sorted(BUILD))
def test_a_local_archive_becomes_the_project_layout_with_its_licence(sample_root, tmp_path, source, cache):
    archive = replicas.pack(BUILD[source](sample_root, tmp_path / "unpacked"), tmp_path / "replica.tar.gz")
    target = tmp_path / "data" / CATEGORY[source]
    counts = materialise.run(DatasetSpec(name="bench", source=source, path=str(archive)), CATEGORY[source], target)
    test = list_split(target, "test")
    record = read_provenance(target)
    assert record["licence"] == sources.BENCHMARKS[source].licence and record["source"] == source
    assert record["sha256"] == file_sha256(archive)  # not the owners' file by name: its digest is recorded
    assert counts["train_good"] == 4 and all(s.mask for s in test if s.label)
    if source == "mvtec_ad2":
        assert counts["test_good"] == 1 and counts["test_defective"] == 2
        assert len(list((target / "validation/good").iterdir())) == 2
        assert record["splits"]["test_private"] == record["splits"]["test_private_mixed"] == OBJECTS["sheet_metal"]
    if source == "visa":
        mask = np.asarray(Image.open(target / test[0].mask))
        assert test[0].path == "test/bad/000.JPG" and set(np.unique(mask).tolist()) == {0, 255}
    if source == "mvtec_loco":
        # the union of the structural picture's two defects is its mask; each defect kept apart for sPRO
        assert [(s.defect, s.mask) for s in test if s.label] == [
            ("logical_anomalies", "ground_truth/logical_anomalies/000_mask.png"),
            ("structural_anomalies", "ground_truth/structural_anomalies/000_mask.png"),
        ]
        halves = [
            np.asarray(Image.open(p)) > 0 for p in sorted((target / "defects/structural_anomalies/000").iterdir())
        ]
        union = np.asarray(Image.open(target / "ground_truth/structural_anomalies/000_mask.png")) == 255
        assert len(halves) == 2 and np.array_equal(halves[0] | halves[1], union) and record["splits"]["defects"] == 3
        assert (target / "defects_config.json").is_file()


def test_an_unpacked_folder_is_copied_and_left_as_it_was(sample_root, tmp_path):
    folder = replicas.visa(sample_root, tmp_path / "unpacked")
    before = files_under(folder)
    materialise.run(DatasetSpec(name="visa", source="visa", path=str(folder)), "candle", tmp_path / "out")
    assert files_under(folder) == before and len(list_split(tmp_path / "out", "train")) == 4
    assert read_provenance(tmp_path / "out")["location"] == str(folder)


def test_the_download_falls_through_a_dead_link_and_checks_the_owners_digest(sample_root, tmp_path, cache, monkeypatch):
    archive = replicas.pack(replicas.visa(sample_root, tmp_path / "unpacked"), tmp_path / "VisA_20220922.tar")
    known = sources.BENCHMARKS["visa"]
    with ArchiveServer({"now/VisA_20220922.tar": archive.read_bytes()}) as server:
        links = (server.url("gone/VisA_20220922.tar"), server.url("now/VisA_20220922.tar"))
        monkeypatch.setitem(
            sources.BENCHMARKS, "visa", dataclasses.replace(known, urls=links, sha256=file_sha256(archive))
        )
        materialise.run(DatasetSpec(name="visa", source="visa"), "candle", tmp_path / "out")
        assert read_provenance(tmp_path / "out")["location"] == links[1]
        # a file that is not the published one is refused and deleted, nothing written
        monkeypatch.setitem(sources.BENCHMARKS, "visa", dataclasses.replace(known, urls=links))
        (cache / "visa" / "VisA_20220922.tar").unlink()
        with pytest.raises(Exception, match="does not match the published"):
            materialise.run(DatasetSpec(name="visa", source="visa"), "candle", tmp_path / "again")
    assert not (tmp_path / "again").exists() and not list((cache / "visa").iterdir())


def _project_with(project, tmp_path, source, folder):
    edit_params(
        project,
        **{
            f"download.{source}": {"source": source, "path": str(folder)},
            "run.dataset": source,
            "run.categories": [CATEGORY[source]],
        },
    )


def _drop_validation(folder):
    __import__("shutil").rmtree(folder / "sheet_metal/validation")


def _missing_image(folder):
    (folder / "candle/Data/Images/Normal/001.JPG").unlink()


def _no_saturation(folder):
    config = json.loads((folder / "pushpins/defects_config.json").read_text())
    del config[1]["saturation_threshold"]
    (folder / "pushpins/defects_config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    ("source", "damage", "needles"),
    [
        ("mvtec_ad2", _drop_validation, ("sheet_metal/validation/good", "missing")),
        ("visa", _missing_image, ("1cls.csv line 3", "001.JPG", "not found")),
        ("mvtec_loco", _no_saturation, ("defects_config.json", "entry 1 saturation_threshold")),
    ],
)
def test_a_bad_layout_is_one_line_and_leaves_nothing(project, sample_root, tmp_path, source, damage, needles):
    folder = BUILD[source](sample_root, tmp_path / "unpacked")
    damage(folder)
    _project_with(project, tmp_path, source, folder)
    result = run_cli("download", "-c", CATEGORY[source], cwd=project)
    assert_usage_error(result, *needles, str(folder))  # the user's file, never the temporary copy's
    assert ".tmp" not in result.stderr and files_under(project / "data" / source) == []


def test_an_unknown_category_names_the_benchmarks_own(project, tmp_path):
    edit_params(project, **{"download.visa": {"source": "visa"}, "run.dataset": "visa", "run.categories": ["bottle"]})
    assert_usage_error(run_cli("download", "-c", "bottle", cwd=project), "unknown category 'bottle'", "pcb4")


def test_the_owners_links_are_checked_monthly():
    links = sources.known_links()
    for name, known in sources.BENCHMARKS.items():
        assert links[name] == known.urls and all(
            u.startswith("https://") and u.endswith(known.archive) for u in known.urls
        )
        assert len(known.sha256) == 64 and known.categories
