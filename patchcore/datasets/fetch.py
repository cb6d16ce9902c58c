"""Resumable HTTPS downloads that are never mistaken for complete before they are verified."""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tqdm import tqdm

from patchcore.config.sources import fetchable, well_formed
from patchcore.errors import UsageError

CHUNK = 1 << 20
GONE = (404, 410)  # the server says the file is not there: a moved or dead link, not a network fault


class DeadLink(UsageError):
    """HTTP 404 or 410: the link itself is dead, so the next known link is worth trying."""

    def __init__(self, url: str, code: int, reason: str):
        super().__init__(f"{url}: the server answered HTTP {code} {reason}; the link is dead or has moved")
        self.url, self.code = url, code


def check_url(url: str) -> None:
    if fetchable(url):
        return
    if not well_formed(url):
        raise UsageError(
            f"{url[:200]!r}: not a well-formed URL (a host name, a port in [0, 65535], no spaces); correct it in params.yaml"
        )
    raise UsageError(
        f"{url}: only https URLs are fetched (plain http only from this machine itself); use the https address"
    )


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is followed only to an address ``check_url`` allows: an https server cannot hand the download to plain
    http."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        check_url(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener(context: ssl.SSLContext) -> urllib.request.OpenerDirector:
    """Certificates checked with ``context``; redirects only to addresses ``check_url`` allows."""
    return urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), _CheckedRedirects())


def file_sha256(path: Path, progress: bool = True) -> str:
    digest = hashlib.sha256()
    bar = tqdm(
        total=path.stat().st_size,
        unit="B",
        unit_scale=True,
        desc=f"sha256 {path.name}",
        leave=False,
        disable=not progress,
    )
    with open(path, "rb") as f, bar:
        while block := f.read(CHUNK):
            digest.update(block)
            bar.update(len(block))
    return digest.hexdigest()


def _offline(url: str, exc: BaseException) -> UsageError:
    host = urllib.parse.urlsplit(url).hostname
    return UsageError(
        f"cannot reach {host} to download {url} ({exc}); this machine looks offline: download the file elsewhere and set the data set's 'path' in params.yaml to the local copy"
    )


def _transfer(url: str, part: Path, context: ssl.SSLContext, timeout: float) -> None:
    """One request: append the rest of the file to ``part`` (or start it over when the server ignores ranges)."""
    start = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    try:
        with _opener(context).open(request, timeout=timeout) as response:
            if start and response.status != 206:
                start = 0  # the server ignored the range: start over
            length = response.headers.get("Content-Length")
            total = start + int(length) if length is not None else None
            with (
                open(part, "r+b" if start else "wb") as out,
                tqdm(
                    total=total,
                    initial=start,
                    unit="B",
                    unit_scale=True,
                    desc=f"download {part.name.removesuffix('.part')}",
                ) as bar,
            ):
                out.seek(start)
                out.truncate()
                while block := response.read(CHUNK):
                    out.write(block)
                    bar.update(len(block))
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:  # asked past the end: the partial file is already whole
            return
        if exc.code in GONE:
            raise DeadLink(url, exc.code, exc.reason) from None
        raise UsageError(f"{url}: the server answered HTTP {exc.code} {exc.reason}; check the URL") from None
    if total is not None and part.stat().st_size < total:
        raise http.client.IncompleteRead(b"", total - part.stat().st_size)


def fetch(url: str, dest: Path, sha256: str | None = None, retries: int = 5, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest``, resuming a partial ``dest.part`` with HTTP range requests.

    The bytes live in ``<dest>.part`` until the transfer is complete and, when ``sha256``
    is given, verified; only then are they renamed to ``dest``. A checksum mismatch
    deletes the partial file, so the next run starts clean.
    """
    check_url(url)
    dest = Path(dest)
    if dest.is_file():
        if sha256 is None or file_sha256(dest) == sha256:
            return dest
        dest.unlink()  # a stale or damaged copy: fetch it again
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    context = ssl.create_default_context()  # certificates and host names are always checked
    attempt = 0
    while True:
        try:
            _transfer(url, part, context, timeout)
            break
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise UsageError(
                    f"{url}: TLS certificate check failed ({reason.verify_message}); not downloading from an unverified server"
                ) from None
            if isinstance(reason, socket.gaierror) or (
                isinstance(reason, ConnectionRefusedError) and not part.exists()
            ):
                raise _offline(url, reason) from None
            attempt += 1
            if attempt > retries:
                raise UsageError(
                    f"{url}: download failed after {retries} retries ({reason}); run again to resume from {part}"
                ) from None
            time.sleep(min(2.0**attempt * 0.1, 10.0))
    if sha256 is not None:
        actual = file_sha256(part)
        if actual != sha256:
            part.unlink()
            raise UsageError(
                f"{url}: sha256 {actual} does not match the published {sha256}; the corrupt download was deleted, run again"
            )
    os.replace(part, dest)
    return dest


def fetch_first(urls: tuple[str, ...], dest: Path, sha256: str | None, key: str, known: bool) -> tuple[str, Path]:
    """Try ``urls`` in order, moving on only from a dead link; returns the link that served and the file.

    ``key`` is the params.yaml key that overrides the links; ``known``: the links are the
    project's own list (not the user's), so the fix is to override it rather than correct it.
    """
    dead = []
    for url in urls:
        try:
            return url, fetch(url, dest, sha256)
        except DeadLink as exc:
            dead.append(f"{url} (HTTP {exc.code})")
    fix = (
        f"the publisher has moved its files: put the current link in params.yaml '{key}' (a list of https URLs, tried in order)"
        if known
        else f"correct the links in params.yaml '{key}'"
    )
    raise UsageError(f"every link is dead: {', '.join(dead)}; {fix}, or set the data set's 'path' to a local copy")


def check_link(url: str, timeout: float = 30.0) -> str | None:
    """None when ``url`` serves a file (a ranged request for its first byte), else what is wrong with it."""
    check_url(url)
    request = urllib.request.Request(url, headers={"Range": "bytes=0-0"})
    try:
        with _opener(ssl.create_default_context()).open(request, timeout=timeout) as response:
            return None if response.status in (200, 206) else f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code} {exc.reason}"
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        return f"unreachable ({getattr(exc, 'reason', exc)})"
