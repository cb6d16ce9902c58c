"""Where a data set comes from: one entry of params.yaml's ``download:``."""

from __future__ import annotations

from typing import Literal

from pydantic import StrictStr, model_validator

from .names import Name
from .types import Section

Source = Literal["bundled", "mvtec", "url", "archive", "folder"]
SOURCES: tuple[str, ...] = Source.__args__  # type: ignore[attr-defined]


class DatasetSpec(Section):
    """One entry of ``download:``; ``name`` is its key."""

    name: Name
    source: Source
    path: StrictStr | None = None  # archive/folder: the local copy; mvtec: an optional local copy
    url: StrictStr | None = None
    sha256: StrictStr | None = None

    @model_validator(mode="after")
    def _complete(self) -> DatasetSpec:
        if self.source in ("archive", "folder") and not self.path:
            raise ValueError(f"'path' is required for source '{self.source}': the local {self.source} to read")
        if self.source == "url" and not (self.url and self.sha256):
            raise ValueError("needs 'url' and its 'sha256' for source 'url'; the checksum is checked before use")
        if self.sha256 is not None and (len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256.lower())):
            raise ValueError("'sha256' must be 64 hexadecimal digits")
        return self
