"""`ServeSettings`: the batching and limits of `ptuning serve`, read by the app and its middleware."""

from __future__ import annotations

from dataclasses import dataclass

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def normal_host(host: str) -> str:
    """A host name as the Host check compares it: no brackets, no trailing dot, lower case."""
    return host.strip().strip("[]").rstrip(".").lower()


@dataclass
class ServeSettings:
    """Batching and limits. `max_queue` counts inputs accepted and not yet answered."""

    max_batch_size: int = 32
    max_wait_ms: float = 5.0
    max_queue: int = 1024
    max_inputs: int = 64
    max_chars: int = 10_000
    allow_admin: bool = True
    # Admin (POST/DELETE /v1/tasks/{name}) needs `Authorization: Bearer <admin_token>`; without a
    # token it is off, unless `allow_admin_without_token` (the command allows that on loopback only).
    admin_token: str | None = None
    allow_admin_without_token: bool = False
    # Host headers answered (DNS rebinding defence); "*" answers any.
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS
    max_tasks: int = 64
    # Model rows one request may cost, all its tasks together: a QA context longer than the
    # sequence makes one row per window, a multiple-choice input one per choice (413 past it).
    max_rows: int = 512
    body_timeout_s: float = 30.0  # a body not complete this long after its headers gets 408
    header_timeout_s: float = 10.0  # request headers not complete this long after connecting: 408, closed
    keep_alive_s: float = 5.0  # an idle keep-alive connection is closed after this long
    docs: bool = False  # /docs (Swagger UI; the browser fetches its scripts from a public CDN)

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_queue", "max_inputs", "max_chars", "max_tasks", "max_rows"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")
        for name in ("body_timeout_s", "header_timeout_s", "keep_alive_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.admin_token is not None and len(self.admin_token) < 8:
            raise ValueError("the admin token must have at least 8 characters")
        self.allowed_hosts = tuple(normal_host(h) for h in self.allowed_hosts)
        if self.max_queue < self.max_inputs:
            raise ValueError(
                f"max_queue ({self.max_queue}) must be >= max_inputs ({self.max_inputs}), "
                "or a full-size request could never be accepted"
            )

    @property
    def admin_enabled(self) -> bool:
        return self.allow_admin and (bool(self.admin_token) or self.allow_admin_without_token)

    @property
    def max_body_bytes(self) -> int:
        # JSON may spend up to 12 bytes on one character (an escaped surrogate pair), plus structure.
        return self.max_inputs * (self.max_chars * 12 + 1024) + 65536
