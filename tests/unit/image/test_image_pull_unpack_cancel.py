"""A layer pull cancelled while its worker thread still unpacks: the thread is stopped and waited
for before its ingest file and directory go (it used to keep writing to a closed descriptor).

The registry session is faked at its one seam (`blob`); everything else is the real puller.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from cri_py.config.model import Config
from cri_py.image import build
from cri_py.image import pull as pull_module
from cri_py.image.build import Entry
from cri_py.image.content import ContentStore
from cri_py.image.pull import Puller
from cri_py.image.unpack import UnpackLimits
from cri_py.tasks import TaskOwner

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the unpacker sets owners: needs root")


class _Response:
    def __init__(self, data: bytes, sent_all: asyncio.Event) -> None:
        self._data = data
        self._sent_all = sent_all

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self._data), 1 << 16):
            yield self._data[start : start + (1 << 16)]


class _Session:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.sent_all = asyncio.Event()

    def describe(self) -> str:
        return "fake registry"

    @asynccontextmanager
    async def blob(self, digest: str, urls: list[str] | None = None) -> AsyncIterator[_Response]:
        yield _Response(self.data, self.sent_all)
        # set as the response closes: the puller's next await is the one on its worker
        self.sent_all.set()


def test_cancel_during_unpack_waits_for_the_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # many files: unpacking goes on well after the last byte arrived (4 MiB stay buffered)
    rng = random.Random(15)
    layer = build.layer([Entry(f"f{i:05d}", data=rng.randbytes(4096)) for i in range(3000)], compress=False)
    worker_ended = threading.Event()
    pulled_away: list[str] = []  # what the worker found gone while it still ran
    real_ingest = pull_module._ingest

    def watched_ingest(pipe: Any, fd: int, size: int, unpack_dir: Path | None, limits: Any) -> Any:
        try:
            return real_ingest(pipe, fd, size, unpack_dir, limits)
        finally:
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
                if "/ingest/" not in target or target.endswith(" (deleted)"):
                    pulled_away.append(f"its descriptor now names {target}")
            except OSError:
                pulled_away.append("its descriptor was closed")
            if unpack_dir is not None and not unpack_dir.is_dir():
                pulled_away.append("its unpack directory was removed")
            worker_ended.set()

    monkeypatch.setattr(pull_module, "_ingest", watched_ingest)
    content = ContentStore(tmp_path / "images")
    content.prepare()

    async def scenario() -> None:
        puller = Puller(Config(root=tmp_path), content, UnpackLimits(), TaskOwner())
        session: Any = _Session(layer.blob)
        digest = build.digest_of(layer.blob)
        desc = {"digest": digest, "size": len(layer.blob)}
        pull = asyncio.ensure_future(
            puller._stream_layer(session, desc, layer.diff_id, "sha256:" + "c" * 64, unpack=True)
        )
        await session.sent_all.wait()
        pull.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pull
        assert worker_ended.is_set(), "the cancellation arrived while the worker thread still ran"
        assert pulled_away == []
        # the worker has ended: nothing of the layer is left, and nothing appears afterwards
        names = [p.name for p in content.layers_dir.iterdir()] + [
            p.name for p in content.ingest_dir.iterdir()
        ]
        assert names == []
        reused = os.open(tmp_path / "probe", os.O_CREAT | os.O_WRONLY)  # likely the freed fd number
        await asyncio.sleep(0.3)
        os.close(reused)
        assert (tmp_path / "probe").stat().st_size == 0
        assert [p.name for p in content.layers_dir.iterdir()] == []
        assert not content.has_blob(digest)
        await puller.close()

    asyncio.run(scenario())


class _StalledSession(_Session):
    """Sends the first chunk of the layer, then nothing: the download hangs mid-layer."""

    @asynccontextmanager
    async def blob(self, digest: str, urls: list[str] | None = None) -> AsyncIterator[Any]:
        session = self

        class _Stalled:
            async def aiter_raw(self) -> AsyncIterator[bytes]:
                yield session.data[: 1 << 16]
                session.sent_all.set()
                await asyncio.Event().wait()  # never again
                yield b""  # pragma: no cover

        yield _Stalled()


def test_cancel_mid_download_leaves_no_unretrieved_worker_error(tmp_path: Path) -> None:
    """The worker thread, stopped by the cancelled download, ends with PipeAborted; nobody
    wants that outcome, and asyncio must not report it as 'Task exception was never retrieved'."""
    import gc

    layer = build.layer([Entry("big", data=random.Random(16).randbytes(1 << 20))], compress=False)
    content = ContentStore(tmp_path / "images")
    content.prepare()
    reported: list[str] = []

    async def scenario() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: reported.append(ctx["message"]))
        puller = Puller(Config(root=tmp_path), content, UnpackLimits(), TaskOwner())
        session: Any = _StalledSession(layer.blob)
        desc = {"digest": build.digest_of(layer.blob), "size": len(layer.blob)}
        pull = asyncio.ensure_future(
            puller._stream_layer(session, desc, layer.diff_id, "sha256:" + "d" * 64, unpack=True)
        )
        await session.sent_all.wait()
        await asyncio.sleep(0.05)  # the worker reads the first chunk and waits for more
        pull.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pull
        del pull
        gc.collect()  # an unretrieved exception is reported when its task is collected
        await asyncio.sleep(0)
        assert [p.name for p in content.ingest_dir.iterdir()] == []
        await puller.close()

    asyncio.run(scenario())
    gc.collect()
    assert reported == []
