"""A quick reachability probe, so an offline machine fails in seconds, not after retries."""

from __future__ import annotations

import os
import socket
import urllib.parse

from patchcore.backbones.base import WeightsStatus
from patchcore.config import BackboneSettings
from patchcore.errors import UsageError

NETWORK_PROBE_TIMEOUT_S = 5.0


def reachable(url: str) -> bool:
    """A TCP connect to the host; PATCHCORE_OFFLINE=1 (or HF_HUB_OFFLINE=1) skips the network."""
    if os.environ.get("PATCHCORE_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    host = urllib.parse.urlsplit(url).hostname or ""
    try:
        with socket.create_connection((host, 443), timeout=NETWORK_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def unavailable(settings: BackboneSettings, status: WeightsStatus, url: str) -> UsageError:
    return UsageError(
        f"backbone {settings.name}: {status.source} weights are not on this machine (looked for {status.looked_at}) "
        f"and {url} cannot be reached; download that file elsewhere and set backbones.{settings.name}.weights to its path"
    )
