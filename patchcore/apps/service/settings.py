"""The service's settings: their defaults and their limits, declared once for `patchcore serve` and the app."""

from __future__ import annotations

from dataclasses import dataclass, field

from patchcore.errors import UsageError

HOST = "127.0.0.1"  # loopback: beyond it only with PATCHCORE_TOKEN set
PORT = 8000


@dataclass
class Settings:
    model_path: str
    max_batch: int = 8  # images scored in one forward pass
    max_wait_ms: float = 10.0  # how long a request waits for others to join its batch
    max_upload_mb: int = 32
    max_queue: int = 256
    token: str | None = None
    metrics: dict | None = None  # evaluate's figures for this model, when the project has them
    extra: dict = field(default_factory=dict)

    # the option each limit is set by, and its range (a larger batch or upload would only exhaust memory)
    LIMITS = {"max_batch": (1, 64), "max_wait_ms": (0, 1000), "max_upload_mb": (1, 1024)}

    @property
    def max_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024

    def check(self) -> Settings:
        for name, (low, high) in self.LIMITS.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise UsageError(f"--{name.replace('_', '-')} {value}: must be in [{low}, {high}]")
        return self


DEFAULT = Settings(model_path="")
