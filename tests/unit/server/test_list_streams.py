"""Chunking for the streaming List RPCs: every item once, in order, no empty or oversized message."""

from __future__ import annotations

from cri_py.api import api_pb2
from cri_py.server.list_streams import chunks


def _container(i: int, size: int) -> api_pb2.Container:
    return api_pb2.Container(id=f"{i:064d}", annotations={"blob": "x" * size})


def test_chunks_keep_every_item_once_in_order_within_the_bound() -> None:
    items = [_container(i, 1000 + 37 * i) for i in range(300)]
    batches = list(chunks(items, limit_bytes=64 * 1024))
    assert [c.id for b in batches for c in b] == [c.id for c in items]
    assert all(batches) and len(batches) > 1
    for batch in batches:
        size = api_pb2.ListContainersResponse(containers=batch).ByteSize()
        assert size <= 64 * 1024


def test_an_item_larger_than_the_bound_goes_alone_and_nothing_is_sent_for_none() -> None:
    big = _container(1, 100_000)
    batches = list(chunks([_container(0, 10), big, _container(2, 10)], limit_bytes=50_000))
    assert [[c.id[-1] for c in b] for b in batches] == [["0"], ["1"], ["2"]]
    assert list(chunks([], limit_bytes=10)) == []


def test_many_small_items_are_bounded_by_count_too() -> None:
    items = [api_pb2.PodSandbox(id=str(i)) for i in range(12)]
    assert [len(b) for b in chunks(items, limit_bytes=1 << 30, limit_items=5)] == [5, 5, 2]
