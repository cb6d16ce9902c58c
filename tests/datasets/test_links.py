"""Download links that survive moves: known links tried in order, params.yaml overrides, the monthly check."""

import os

import pytest

from patchcore.config import DatasetSpec
from patchcore.datasets import materialise, sources
from patchcore.errors import UsageError

from helpers import assert_usage_error, edit_params, run_cli
from httpserver import ArchiveServer

BODY = b"xz archive bytes" * 1000


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PATCHCORE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_dead_known_link_falls_through_to_the_next(cache, monkeypatch):
    with ArchiveServer({"older/toothbrush.tar.xz": BODY}) as server:
        links = (server.url("current/toothbrush.tar.xz"), server.url("older/toothbrush.tar.xz"))
        monkeypatch.setattr(sources, "mvtec_category_urls", lambda category: links)
        location, path, sha256 = materialise._download_mvtec(DatasetSpec(name="mvtec", source="mvtec"), "toothbrush")
    assert location == links[1] and path.read_bytes() == BODY and path == cache / "mvtec" / "toothbrush.tar.xz"
    assert [p for p, _ in server.requests] == ["/current/toothbrush.tar.xz", "/older/toothbrush.tar.xz"]


def test_every_known_link_dead_names_them_and_the_override_key(cache, monkeypatch):
    with ArchiveServer({}) as server:
        links = (server.url("a/wood.tar.xz"), server.url("b/wood.tar.xz"))
        monkeypatch.setattr(sources, "mvtec_category_urls", lambda category: links)
        with pytest.raises(UsageError) as caught:
            materialise._download_mvtec(DatasetSpec(name="mvtec", source="mvtec"), "wood")
    message = str(caught.value)
    assert (
        all(f"{u} (HTTP 404)" in message for u in links)
        and "params.yaml 'download.mvtec.urls'" in message
        and "moved" in message
    )
    assert not any(p.is_file() for p in cache.rglob("*"))  # no partial file


def test_urls_override_the_known_links_and_fill_in_the_category(cache, monkeypatch):
    monkeypatch.setattr(sources, "mvtec_category_urls", lambda category: pytest.fail("the known links were used"))
    with ArchiveServer({"mirror/wood.tar.xz": BODY}) as server:
        spec = DatasetSpec(
            name="mvtec",
            source="mvtec",
            urls=[server.url("gone/{category}.tar.xz"), server.url("mirror/{category}.tar.xz")],
        )
        location, path, _ = materialise._download_mvtec(spec, "wood")
        assert location == server.url("mirror/wood.tar.xz") and path.read_bytes() == BODY
        with pytest.raises(UsageError, match=r"correct the links in params.yaml 'download.mvtec.urls'"):
            materialise._download_mvtec(
                DatasetSpec(name="mvtec", source="mvtec", urls=[server.url("gone/{category}.tar.xz")]), "tile"
            )


def test_an_override_that_is_not_a_list_of_https_urls_is_one_line(project):
    edit_params(
        project,
        **{
            "run.dataset": "mvtec",
            "run.categories": ["wood"],
            "download.mvtec.urls": ["ftp://example.com/wood.tar.xz"],
        },
    )
    assert_usage_error(run_cli("download", "-c", "wood", cwd=project), "download.mvtec.urls.0", "not an https URL")
    edit_params(project, **{"download.mvtec.urls": "https://example.com/wood.tar.xz"})
    assert_usage_error(run_cli("download", "-c", "wood", cwd=project), "download.mvtec.urls", "valid list")
    assert not (project / "data" / "mvtec").exists()


def test_check_links_makes_ranged_requests_and_fails_on_a_dead_one(tmp_path):
    with ArchiveServer({"live.tar.xz": BODY}) as server:
        result = run_cli(
            "check-links", "--url", server.url("live.tar.xz"), "--url", server.url("dead.tar.xz"), cwd=tmp_path
        )
        ranges = {rng for _, rng in server.requests}
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("ok") and lines[1].startswith("dead") and "HTTP 404" in lines[1]
    assert ranges == {"bytes=0-0"} and "1 dead link" in result.stderr


def test_every_category_has_its_known_links_current_first():
    for name, c in sources.MVTEC.items():
        links = sources.mvtec_category_urls(name)
        assert len(set(links)) == 3 and all(
            u.startswith("https://www.mydrive.ch/shares/") and u.endswith(f"/{name}.tar.xz") for u in links
        )
        assert links[0] == f"https://www.mydrive.ch/shares/{c.share}/download/{c.archive_id}/{name}.tar.xz"
    assert sources.known_links()["mvtec (full archive)"][0] == sources.MVTEC_FULL_URLS[0]
    assert len(sources.known_links()) == 1 + len(sources.MVTEC) + len(sources.BENCHMARKS)
    assert os.path.basename(sources.MVTEC_FULL_URLS[0]) == sources.MVTEC_FULL_NAME
