"""Where a data set comes from: one entry of params.yaml's ``download:``."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, StrictStr, model_validator

from patchcore.config.names import Name
from patchcore.config.types import Section

_LABELS = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?")


def well_formed(url: str) -> bool:
    """A URL a request can be made of: a host name or address, a valid port, no spaces or control characters.

    urllib refuses the others only once it connects (http.client.InvalidURL), which the download
    would take for a network failure and retry."""
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError past 65535 or for a non-number)
    except ValueError:
        return False
    host = parts.hostname or ""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    try:
        return bool(host) and _LABELS.fullmatch(host.encode("idna").decode("ascii")) is not None
    except UnicodeError:
        return False


def fetchable(url: str) -> bool:
    """The rule of every download: a well-formed https URL, or plain http only to this machine itself (localhost,
    127.0.0.0/8, ::1)."""
    if not well_formed(url):
        return False
    parts = urlsplit(url)
    if parts.scheme == "https":
        return True
    host = parts.hostname or ""
    if parts.scheme != "http":
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _link(url: str) -> str:
    if not fetchable(url) or not urlsplit(url).hostname:
        what = (
            "an https URL" if well_formed(url) else "a well-formed URL (a host name, a port in [0, 65535], no spaces)"
        )
        raise ValueError(f"{url[:200]!r} is not {what}; give each link as https://host/path")
    return url


Link = Annotated[StrictStr, AfterValidator(_link)]

Source = Literal["bundled", "mvtec", "mvtec_ad2", "visa", "mvtec_loco", "url", "archive", "folder"]
# the benchmarks whose owners publish one archive: downloaded from the known links (or `urls`), or read from `path'
BENCHMARKS = ("mvtec_ad2", "visa", "mvtec_loco")
SOURCES: tuple[str, ...] = Source.__args__  # type: ignore[attr-defined]


class DatasetSpec(Section):
    """One entry of ``download:``; ``name`` is its key."""

    name: Name
    source: Source
    path: StrictStr | None = None  # archive/folder: the local copy; mvtec and the benchmarks: an optional local copy
    url: StrictStr | None = None
    # links tried in order, each moved on from only when dead (HTTP 404/410); for mvtec and the
    # benchmarks they replace the known ones (mvtec's may hold {category})
    urls: list[Link] | None = Field(default=None, min_length=1, max_length=20)
    sha256: StrictStr | None = None

    @model_validator(mode="after")
    def _complete(self) -> DatasetSpec:
        if self.source in ("archive", "folder") and not self.path:
            raise ValueError(f"'path' is required for source '{self.source}': the local {self.source} to read")
        if self.source == "url" and not ((self.url or self.urls) and self.sha256):
            raise ValueError(
                "needs 'url' (or a list 'urls') and its 'sha256' for source 'url'; the checksum is checked before use"
            )
        if self.urls and self.source not in ("url", "mvtec", *BENCHMARKS):
            raise ValueError(
                f"'urls' is read for sources 'url', 'mvtec' and {', '.join(map(repr, BENCHMARKS))}, not '{self.source}'; remove it"
            )
        if self.sha256 is not None and self.source in BENCHMARKS:
            raise ValueError(f"source '{self.source}' is checked against its owners' archive digest; remove 'sha256'")
        if self.name == "overlay":
            raise ValueError(
                "'overlay' is taken: plots/overlay/ holds the backbones' curves side by side; name the data set otherwise"
            )
        if self.sha256 is not None and (
            len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256.lower())
        ):
            raise ValueError("'sha256' must be 64 hexadecimal digits")
        return self
