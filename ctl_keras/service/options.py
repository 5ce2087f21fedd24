"""ServeOptions: every setting of `ctl serve`, checked once here (absl's bounds on the flags are only a
first line): the service reads them as attributes (app.py, generation.py, cli/serve.py's server)."""

from __future__ import annotations

import dataclasses

TOWER_SCHEMES = ("grpc://", "http://", "https://")
_AT_LEAST = {"port": 0, "max_thumbnail_bytes": 0, "max_batch": 1, "max_queue": 1, "deadline_ms": 1,
             "max_body_bytes": 1, "max_pixels": 1, "max_k": 1, "max_connections": 0, "backlog": 1}
_NOT_NEGATIVE = ("max_wait_ms", "watch_seconds", "drain_seconds", "linger_seconds")
_POSITIVE = ("head_timeout", "body_timeout", "keep_alive_seconds")


@dataclasses.dataclass(frozen=True)
class ServeOptions:
    """The index and tower served, the request bounds (app.py), and the server's connection bounds.
    api_key: the key the POST routes require (read from --api_key_file by from_flags), None: no key."""

    index: str
    export_dir: str | None = None
    tower: str = "savedmodel"
    backend: str | None = None
    product_images: str | None = None
    max_thumbnail_bytes: int = 256 << 20
    max_batch: int = 8
    max_wait_ms: float = 5.0
    max_queue: int = 64
    deadline_ms: int = 10_000
    max_body_bytes: int = 8 << 20
    max_pixels: int | None = None
    max_k: int = 100
    api_key: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    watch_seconds: float = 2.0
    drain_seconds: float = 20.0
    max_connections: int = 0
    head_timeout: float = 10.0
    body_timeout: float = 60.0
    keep_alive_seconds: float = 5.0
    backlog: int = 128
    linger_seconds: float = 10.0

    def __post_init__(self):
        """One line naming the flag of the first bad value."""
        if not self.index:
            raise ValueError("--index is required")
        if self.tower and self.tower != "savedmodel" and not self.tower.startswith(TOWER_SCHEMES):
            raise ValueError(f"--tower={self.tower}: expected savedmodel, grpc://host:port or http://host:port")
        if self.backend is not None:
            from ctl_keras.retrieval.backend import BACKENDS  # noqa: PLC0415

            if self.backend not in BACKENDS:
                raise ValueError(f"--backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        for name, least in _AT_LEAST.items():
            value = getattr(self, name)
            if value is None and name == "max_pixels":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"--{name} must be an integer of at least {least}, got {value!r}")
        if self.port > 65535:
            raise ValueError(f"--port must be at most 65535, got {self.port}")
        for name in (*_NOT_NEGATIVE, *_POSITIVE):
            value, positive = getattr(self, name), name in _POSITIVE
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (positive and value == 0):
                raise ValueError(f"--{name} must be {'positive' if positive else 'at least 0'}, got {value!r}")
        if self.api_key is not None and not self.api_key:
            raise ValueError("the API key is empty")

    @classmethod
    def from_flags(cls, values) -> ServeOptions:
        """From the absl flags of cli/serve.py (same names), the key read from --api_key_file."""
        api_key = None
        if values.api_key_file:
            with open(values.api_key_file) as f:
                api_key = f.read().strip()
            if not api_key:
                raise ValueError(f"--api_key_file={values.api_key_file} is empty")
        names = [f.name for f in dataclasses.fields(cls) if f.name != "api_key"]
        return cls(**{name: getattr(values, name) for name in names}, api_key=api_key)
