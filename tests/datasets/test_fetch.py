import hashlib

import pytest

from patchcore.datasets.fetch import fetch
from patchcore.errors import UsageError

from httpserver import ArchiveServer

BODY = bytes(range(256)) * 40_000  # 10 MB, several read chunks


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_interrupted_download_resumes_with_a_range_request(tmp_path):
    with ArchiveServer({"a.tar.gz": BODY}, cut_first=True) as server:
        dest = fetch(server.url("a.tar.gz"), tmp_path / "a.tar.gz", sha256=sha(BODY))
        ranges = [r for _, r in server.requests]
    assert dest.read_bytes() == BODY
    assert ranges[0] is None and ranges[1] == f"bytes={len(BODY) // 2}-"  # resumed where the cut happened
    assert not (tmp_path / "a.tar.gz.part").exists()


def test_partial_file_is_never_taken_as_complete_and_resumes_next_run(tmp_path):
    dest = tmp_path / "a.tar.gz"
    with ArchiveServer({"a.tar.gz": BODY}, cut_first=True) as server:
        with pytest.raises(UsageError, match="run again to resume"):
            fetch(server.url("a.tar.gz"), dest, sha256=sha(BODY), retries=0)
        assert not dest.exists() and (tmp_path / "a.tar.gz.part").stat().st_size == len(BODY) // 2
        fetch(server.url("a.tar.gz"), dest, sha256=sha(BODY))
        assert server.requests[-1][1] == f"bytes={len(BODY) // 2}-"
    assert dest.read_bytes() == BODY


def test_a_corrupted_byte_is_caught_and_the_download_deleted(tmp_path):
    bad = bytearray(BODY)
    bad[123_456] ^= 0x01
    with ArchiveServer({"a.tar.gz": bytes(bad)}) as server:
        with pytest.raises(UsageError, match="does not match the published"):
            fetch(server.url("a.tar.gz"), tmp_path / "a.tar.gz", sha256=sha(BODY))
    assert list(tmp_path.iterdir()) == []


def test_offline_and_insecure_urls_fail_clearly(tmp_path):
    with ArchiveServer({}) as server:
        port = server.httpd.server_address[1]
    # the server is gone: nothing listens on that port any more
    with pytest.raises(UsageError, match="looks offline"):
        fetch(f"http://127.0.0.1:{port}/x.tar.gz", tmp_path / "x.tar.gz")
    with pytest.raises(UsageError, match="only https"):
        fetch("http://example.com/x.tar.gz", tmp_path / "x.tar.gz")
    with pytest.raises(UsageError, match="looks offline"):
        fetch("https://no-such-host.invalid/x.tar.gz", tmp_path / "x.tar.gz")
    assert list(tmp_path.iterdir()) == []


def test_http_error_names_the_status(tmp_path):
    with ArchiveServer({}) as server:
        with pytest.raises(UsageError, match="HTTP 404"):
            fetch(server.url("missing.tar.gz"), tmp_path / "m.tar.gz")


def test_a_redirect_to_plain_http_elsewhere_is_not_followed(tmp_path):
    # https only: a server (here the loopback one tests may use) cannot hand the download to plain http
    with ArchiveServer(
        {"x.tar.gz": b"data"}, redirects={"moved": "http://example.com/x.tar.gz", "here": "/x.tar.gz"}
    ) as server:
        with pytest.raises(UsageError, match="http://example.com/x.tar.gz: only https"):
            fetch(server.url("moved"), tmp_path / "x.tar.gz")
        assert not (tmp_path / "x.tar.gz").exists() and not (tmp_path / "x.tar.gz.part").exists()
        assert (
            fetch(server.url("here"), tmp_path / "x.tar.gz").read_bytes() == b"data"
        )  # a redirect it allows is followed


MALFORMED = [
    "https://exa mple.com/a.tar.gz",
    "https://example.com:99999/a.tar.gz",
    "https:///a.tar.gz",
    "https://ex..ample.com/a",
    "https://host\n/a",
]


@pytest.mark.parametrize("url", MALFORMED)
def test_a_malformed_url_is_refused_before_any_request(url, tmp_path, monkeypatch):
    """urllib finds these only when it connects (http.client.InvalidURL), which the retry loop took for a network
    fault."""
    import patchcore.datasets.fetch as fetching

    requests: list[str] = []
    monkeypatch.setattr(fetching, "_transfer", lambda u, *a: requests.append(u))
    with pytest.raises(UsageError, match="not a well-formed URL"):
        fetch(url, tmp_path / "a.tar.gz")
    assert requests == [] and not list(tmp_path.iterdir())
