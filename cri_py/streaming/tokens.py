"""Single-use tokens for streaming URLs (the only thing a client brings to the server)."""

from __future__ import annotations

import base64
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from cri_py.errors import ResourceExhausted

T = TypeVar("T")

TOKEN_TTL = 60.0
MAX_IN_FLIGHT = 1000


def new_token() -> str:
    # Same shape as kubelet's: 6 random bytes, base64url, 8 characters.
    return base64.urlsafe_b64encode(secrets.token_bytes(6)).decode()[:8]


@dataclass
class _Entry(Generic[T]):
    request: T
    expires: float


class RequestCache(Generic[T]):
    """Pending streaming requests by token: consumed on first use, gone after `ttl` seconds."""

    def __init__(
        self,
        *,
        ttl: float = TOKEN_TTL,
        max_in_flight: int = MAX_IN_FLIGHT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._max = max_in_flight
        self._clock = clock
        # Insertion order equals expiry order (constant TTL), so pruning pops from the front.
        self._entries: OrderedDict[str, _Entry[T]] = OrderedDict()

    def __len__(self) -> int:
        self._prune()
        return len(self._entries)

    def insert(self, request: T) -> str:
        self._prune()
        if len(self._entries) >= self._max:
            raise ResourceExhausted("maximum number of in-flight requests exceeded")
        token = new_token()
        while token in self._entries:
            token = new_token()
        self._entries[token] = _Entry(request, self._clock() + self._ttl)
        return token

    def consume(self, token: str) -> T | None:
        """The request for `token`, once; None if unknown, used or expired."""
        self._prune()
        entry = self._entries.pop(token, None)
        return entry.request if entry is not None else None

    def _prune(self) -> None:
        now = self._clock()
        while self._entries:
            first = next(iter(self._entries.values()))
            if first.expires > now:
                break
            self._entries.popitem(last=False)
