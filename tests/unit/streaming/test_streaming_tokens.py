"""The token cache: single use, TTL, bound on pending requests."""

from __future__ import annotations

import pytest

from cri_py.errors import ResourceExhausted
from cri_py.streaming.tokens import RequestCache, new_token


def test_token_shape() -> None:
    tokens = {new_token() for _ in range(200)}
    assert len(tokens) == 200
    assert all(len(t) == 8 and t.replace("-", "").replace("_", "").isalnum() for t in tokens)


def test_single_use() -> None:
    cache: RequestCache[str] = RequestCache()
    token = cache.insert("req")
    assert cache.consume(token) == "req"
    assert cache.consume(token) is None
    assert cache.consume("unknown") is None


def test_expiry() -> None:
    now = [100.0]
    cache: RequestCache[str] = RequestCache(ttl=60, clock=lambda: now[0])
    old = cache.insert("old")
    now[0] += 30
    young = cache.insert("young")
    now[0] += 30
    assert cache.consume(old) is None
    assert cache.consume(young) == "young"


def test_in_flight_bound_frees_with_time_and_use() -> None:
    now = [0.0]
    cache: RequestCache[int] = RequestCache(ttl=10, max_in_flight=3, clock=lambda: now[0])
    tokens = [cache.insert(i) for i in range(3)]
    with pytest.raises(ResourceExhausted, match="maximum number of in-flight requests exceeded"):
        cache.insert(3)
    cache.consume(tokens[0])
    cache.insert(3)
    now[0] += 11
    assert len(cache) == 0
    cache.insert(4)
