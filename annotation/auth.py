"""Who is calling: bearer tokens, signed image URLs and the per-token rate limit."""

from __future__ import annotations

import collections
import hashlib
import hmac
import math
import threading
import time
from typing import Any

from .db import Database

UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}


def bearer_token(request: Any) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def authenticate(db: Database, request: Any) -> Any:
    """The annotator whose token the request carries; 401 without one or with an unknown one."""
    from fastapi import HTTPException

    token = bearer_token(request)
    if token is None:
        raise HTTPException(401, "missing token: send the header `Authorization: Bearer TOKEN` "
                                 "(a token comes from `curate annotate add-annotator NAME`)", headers=UNAUTHORIZED)
    ann = db.annotator_by_token(token)
    if ann is None:
        raise HTTPException(401, "unknown or revoked token", headers=UNAUTHORIZED)
    return ann


def sign(secret: bytes, sha256: str, expires: int) -> str:
    return hmac.new(secret, f"{sha256}:{expires}".encode(), hashlib.sha256).hexdigest()


def check_signature(secret: bytes, sha256: str, expires: str | None, sig: str | None, now: float | None = None) -> bool:
    if not expires or not sig or not expires.isdigit():
        return False
    if int(expires) < (time.time() if now is None else now):
        return False
    return hmac.compare_digest(sign(secret, sha256, int(expires)), sig)


class RateLimiter:
    """At most ``limit`` events per ``period`` seconds per key (a sliding window); ``limit`` 0: none."""

    def __init__(self, limit: int, period: float) -> None:
        self.limit = limit
        self.period = period
        self._events: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
        self._lock = threading.Lock()

    def hit(self, key: str, now: float | None = None) -> int | None:
        """Record an event; None if allowed, else the seconds to wait (for ``Retry-After``)."""
        if self.limit <= 0:
            return None
        now = time.monotonic() if now is None else now
        with self._lock:
            q = self._events[key]
            while q and q[0] <= now - self.period:
                q.popleft()
            if len(q) >= self.limit:
                return max(1, math.ceil(q[0] + self.period - now))
            q.append(now)
            return None


__all__ = ["RateLimiter", "authenticate", "bearer_token", "check_signature", "sign"]
