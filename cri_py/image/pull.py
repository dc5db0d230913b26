"""Pull an image: resolve the manifest, then fetch, verify and unpack layers concurrently.

Each layer streams from the registry into a worker thread that, in one pass, writes the
compressed blob to an ingest file, hashes it, decompresses, hashes the tar and unpacks it.
Nothing becomes visible until the blob digest, the size and the diff id all check out.
A layer another pull is already fetching is awaited, not fetched twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import threading
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

from cri_py import failpoints
from cri_py.api import api_pb2
from cri_py.config.model import Config
from cri_py.errors import Internal, InvalidArgument, Unavailable
from cri_py.image import mediatypes as mt
from cri_py.image.auth import Credentials
from cri_py.image.content import ContentStore, DigestMismatch, chain_ids
from cri_py.image.gunzip import Readable
from cri_py.image.local import diff_ids_of, parse_manifest
from cri_py.image.pipe import ChunkPipe, PipeAborted, ReaderGone
from cri_py.image.platforms import select_platform
from cri_py.image.reference import Reference
from cri_py.image.registry import RegistryClient, RegistrySession, read_limited
from cri_py.image.shared import SharedWork, all_or_none, settle, to_the_end
from cri_py.image.unpack import UnpackLimits, UnpackResult, unpack_layer
from cri_py.tasks import TaskOwner

# containerd downloads three at a time too; on two cores more unpackers only contend for the GIL
MAX_CONCURRENT_LAYERS = 3
CONFIG_MAX = 8 << 20
T = TypeVar("T")
_CHUNK = 1 << 20
# where a layer counts as half unpacked for the failpoint: its first files are written by then
_MIDWAY = 64 << 10


@dataclass
class PullResult:
    manifest_digest: str  # the platform's manifest
    repo_digest: str  # what the tag or digest named: the index, when there is one
    manifest: dict[str, Any]
    config: dict[str, Any]
    chains: list[str]


class _Tee:
    """Reads from the pipe; writes and hashes the compressed bytes on the way through."""

    def __init__(self, source: Readable, fd: int, expected_size: int) -> None:
        self._source = source
        self._fd = fd
        self._expected = expected_size
        self.sha = hashlib.sha256()
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        if data:
            if self.count < _MIDWAY <= self.count + len(data):
                failpoints.hit(failpoints.LAYER_UNPACK_MIDWAY)
            self.count += len(data)
            if self._expected >= 0 and self.count > self._expected:
                raise DigestMismatch(f"blob is larger than its descriptor's {self._expected} bytes")
            self.sha.update(data)
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
        return data

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass


def _ingest(
    pipe: ChunkPipe, fd: int, expected_size: int, unpack_dir: Path | None, limits: UnpackLimits
) -> tuple[str, int, UnpackResult | None]:
    """Worker thread: blob to file + hash, and unpack in the same pass when asked."""
    tee = _Tee(pipe, fd, expected_size)
    try:
        result = unpack_layer(tee, unpack_dir, limits) if unpack_dir is not None else None
        tee.drain()
        os.fsync(fd)
        return "sha256:" + tee.sha.hexdigest(), tee.count, result
    finally:
        pipe.reader_done()


class _Stoppable:
    """A blob file read by an unpacker that stops at its next read once `stop` is set."""

    def __init__(self, raw: Readable, stop: threading.Event) -> None:
        self._raw = raw
        self._stop = stop

    def read(self, size: int = -1) -> bytes:
        if self._stop.is_set():
            raise PipeAborted("the pull was cancelled")
        return self._raw.read(size)


def _unpack_blob(blob: Path, dest: Path, stop: threading.Event, limits: UnpackLimits) -> UnpackResult:
    """Worker thread: unpack a stored blob (another image's, or a pull's that died unpacking)."""
    with open(blob, "rb") as raw:
        return unpack_layer(_Stoppable(raw, stop), dest, limits)


class Puller:
    def __init__(self, config: Config, content: ContentStore, limits: UnpackLimits, tasks: TaskOwner) -> None:
        self.config = config
        self.content = content
        self.limits = limits
        self.client = RegistryClient(config)
        # one download per layer, an owned task shared by every pull that needs it while any
        # still waits (a layer fetch may outlive the pull that started it)
        self._layers: SharedWork[None] = SharedWork(tasks.spawn)
        self._sem = asyncio.Semaphore(MAX_CONCURRENT_LAYERS)
        # unpack workers block on the network for as long as a layer downloads: their own pool
        # keeps them from starving the loop's default executor that other services use
        self._executor = ThreadPoolExecutor(MAX_CONCURRENT_LAYERS, thread_name_prefix="cri-py-unpack")

    async def close(self) -> None:
        await self._layers.cancel_all()
        await self.client.close()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _in_worker(self, func: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)

    async def pull(
        self,
        ref: Reference,
        auth: api_pb2.AuthConfig | None,
        hold: Callable[[Iterable[str]], None],
        verify: Callable[[RegistrySession, bytes], Awaitable[None]] | None = None,
    ) -> PullResult:
        """`verify` (the signature policy) sees the manifest the name resolved to before any
        layer is fetched; it raises to refuse the image."""
        session = self.client.session(ref, Credentials.from_auth(auth))
        body, media_type = await session.manifest()
        repo_digest = _digest(body)
        if ref.digest and repo_digest != ref.digest:
            raise DigestMismatch(f"{ref}: registry sent a manifest with digest {repo_digest}")
        if verify is not None:
            await verify(session, body)
        index_body: bytes | None = None
        doc = _json(body, f"{ref}: manifest")
        media_type = doc.get("mediaType") or media_type
        if media_type in mt.INDEXES or ("manifests" in doc and "layers" not in doc):
            entry = select_platform(doc)
            index_body = body
            body, media_type = await session.manifest(entry["digest"])
            if _digest(body) != entry["digest"]:
                raise DigestMismatch(f"{ref}: platform manifest does not match {entry['digest']}")
            # the repo digest stays the index digest: that is what the user asked for
        manifest = parse_manifest(body)
        config_desc = manifest["config"]
        hold([repo_digest, _digest(body), config_desc["digest"]])
        config_bytes = await self._small_blob(session, config_desc)
        config = _json(config_bytes, f"{ref}: image config")
        diff_ids = diff_ids_of(config, manifest)
        chains = chain_ids(diff_ids)
        hold([*(d["digest"] for d in manifest["layers"]), *chains])
        for desc in manifest["layers"]:
            if desc.get("mediaType", mt.OCI_LAYER) not in mt.LAYERS:
                raise InvalidArgument(f"{ref}: unsupported layer media type {desc.get('mediaType')!r}")
        # a refused layer stops the others (unless another pull waits for them)
        await all_or_none(
            [
                self._layer(session, desc, diff_id, chain)
                for desc, diff_id, chain in zip(manifest["layers"], diff_ids, chains, strict=True)
            ]
        )
        for data, digest in ((config_bytes, config_desc["digest"]), (body, None), (index_body, None)):
            if data is not None:
                # written whole even if the caller leaves meanwhile: its clean-up then sees it
                await to_the_end(asyncio.to_thread(self.content.write_blob, data, digest))
        return PullResult(_digest(body), repo_digest, manifest, config, chains)

    async def _small_blob(self, session: RegistrySession, desc: dict[str, Any]) -> bytes:
        digest = desc["digest"]
        if self.content.has_blob(digest):
            return await asyncio.to_thread(self.content.read_blob, digest)
        if int(desc.get("size", 0)) > CONFIG_MAX:
            raise Internal(f"{session.describe()}: image config {digest} is larger than {CONFIG_MAX} bytes")
        async with session.blob(digest) as resp:
            data = await read_limited(resp, CONFIG_MAX, session.describe())
        if _digest(data) != digest or len(data) != int(desc.get("size", len(data))):
            raise DigestMismatch(f"{session.describe()}: image config {digest} does not verify")
        return data

    async def _layer(self, session: RegistrySession, desc: dict[str, Any], diff_id: str, chain: str) -> None:
        # the same content may come as differently compressed blobs: both must be stored
        key = f"{desc['digest']} {chain}"
        await self._layers.join(key, lambda: self._fetch_layer(session, desc, diff_id, chain))

    async def _fetch_layer(
        self, session: RegistrySession, desc: dict[str, Any], diff_id: str, chain: str
    ) -> None:
        digest = desc["digest"]
        have_blob = self.content.has_blob(digest)
        have_layer = self.content.has_layer(chain)
        if have_blob and have_layer:
            return
        async with self._sem:
            if have_blob:
                await self._unpack_stored(digest, diff_id, chain)
                return
            await self._stream_layer(session, desc, diff_id, chain, unpack=not have_layer)

    async def _unpack_stored(self, digest: str, diff_id: str, chain: str) -> None:
        tmp = self.content.new_layer_tmp()
        stop = threading.Event()
        worker = asyncio.ensure_future(
            self._in_worker(_unpack_blob, self.content.blob_path(digest), tmp / "diff", stop, self.limits)
        )
        try:
            result = await asyncio.shield(worker)
            if result.diff_id != diff_id:
                raise DigestMismatch(f"layer {digest} unpacks to {result.diff_id}, the config says {diff_id}")
            self.content.commit_layer(tmp, chain)
        finally:
            if not worker.done():
                stop.set()
                await settle(worker)  # the thread writes into tmp until it sees the stop
            shutil.rmtree(tmp, ignore_errors=True)

    async def _stream_layer(
        self, session: RegistrySession, desc: dict[str, Any], diff_id: str, chain: str, unpack: bool
    ) -> None:
        digest = desc["digest"]
        size = int(desc.get("size", -1))
        what = session.describe()
        fd, ingest = self.content.new_ingest()
        tmp = self.content.new_layer_tmp() if unpack else None
        loop = asyncio.get_running_loop()
        pipe = ChunkPipe(loop)
        worker = asyncio.ensure_future(
            self._in_worker(_ingest, pipe, fd, size, tmp / "diff" if tmp else None, self.limits)
        )
        try:
            try:
                async with session.blob(digest, list(desc.get("urls") or [])) as resp:
                    async for chunk in resp.aiter_raw():
                        await pipe.put(chunk)
                pipe.close()
            except ReaderGone:
                pass  # the worker failed: its exception says why
            except httpx.HTTPError as exc:
                pipe.abort(exc)
                raise Unavailable(f"{what}: layer {digest}: download failed: {exc}") from exc
            try:
                # shielded: a cancellation must not mark the worker done while its thread writes
                got_digest, got_size, result = await asyncio.shield(worker)
            except DigestMismatch as exc:
                raise DigestMismatch(f"{what}: layer {digest}: {exc}") from exc
            except Internal as exc:
                raise type(exc)(f"{what}: layer {digest}: {exc}") from exc
            if size >= 0 and got_size != size:
                raise DigestMismatch(
                    f"{what}: layer {digest}: got {got_size} bytes, the manifest says {size}"
                )
            if got_digest != digest:
                raise DigestMismatch(f"{what}: layer {digest}: content hashes to {got_digest}")
            if result is not None and result.diff_id != diff_id:
                raise DigestMismatch(
                    f"{what}: layer {digest} unpacks to {result.diff_id}, the config says {diff_id}"
                )
            self.content.commit_blob(ingest, digest)
            if tmp is not None:
                self.content.commit_layer(tmp, chain)
        finally:
            if not worker.done():
                # cancelled (or failed) while the thread still reads: it stops at its next read,
                # and only then are its file and directory taken away
                pipe.abort(asyncio.CancelledError("the pull stopped"))
                await settle(worker)
            os.close(fd)
            ingest.unlink(missing_ok=True)
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError as exc:
        raise Internal(f"{what} is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise Internal(f"{what} is not a JSON object")
    return value
