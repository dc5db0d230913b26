"""ImageService handlers: validate, call `daemon.images` / `daemon.rootfs`, build the reply."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from cri_py.api import api_pb2
from cri_py.errors import CriError, InvalidArgument
from cri_py.events import Timing
from cri_py.image.model import ImageRecord
from cri_py.image.service import ImageService
from cri_py.server.context import Context
from cri_py.server.errors import status_code_for

if TYPE_CHECKING:
    from cri_py.daemon import Daemon
    from cri_py.services import Services


# images per StreamImages message: far below the gRPC message limit even with long tag lists
STREAM_BATCH = 200


def image_message(record: ImageRecord, pinned: bool) -> api_pb2.Image:
    uid, username = record.uid_and_username()
    msg = api_pb2.Image(
        id=record.id,
        repo_tags=record.repo_tags,
        repo_digests=record.repo_digests,
        size=record.size,
        username=username,
        spec=api_pb2.ImageSpec(image=record.id, annotations=record.annotations),
        pinned=pinned,
    )
    if uid is not None:
        msg.uid.value = uid
    return msg


def _verbose_info(record: ImageRecord, pinned: bool) -> dict[str, str]:
    info = {
        "imageSpec": record.config,
        "chainIDs": record.layers,
        "manifestDigest": record.manifest_digest,
        "pinned": pinned,
    }
    return {"info": json.dumps(info, sort_keys=True)}


class ImageHandlers:
    daemon: Daemon
    services: Services

    def _images(self) -> ImageService:
        return self.services.images

    async def PullImage(
        self, request: api_pb2.PullImageRequest, context: Context
    ) -> api_pb2.PullImageResponse:
        ref = request.image.image
        if not ref:
            raise InvalidArgument("PullImage: image.image is required")
        auth = request.auth if request.HasField("auth") else None
        started = time.monotonic()
        try:
            record = await self._images().pull(ref, auth)
        except BaseException as exc:
            if isinstance(exc, CriError):
                reason = status_code_for(exc).name.lower()
            else:
                reason = "internal" if isinstance(exc, Exception) else "cancelled"
            self._pull_timing(ref, started, reason)
            raise
        self._pull_timing(ref, started, "", record.size)
        return api_pb2.PullImageResponse(image_ref=record.id)

    def _pull_timing(self, ref: str, started: float, error: str, size: int = 0) -> None:
        timings = self.daemon.events.timings
        if timings.subscribers:
            timings.publish(Timing("image_pull", "pull", ref, time.monotonic() - started, error, size))

    async def ImageStatus(
        self, request: api_pb2.ImageStatusRequest, context: Context
    ) -> api_pb2.ImageStatusResponse:
        images = self._images()
        record = images.status(request.image.image)
        if record is None:
            # kubelet expects an empty answer for an unknown image, not NOT_FOUND
            return api_pb2.ImageStatusResponse()
        pinned = images.is_pinned(record)
        info = _verbose_info(record, pinned) if request.verbose else {}
        return api_pb2.ImageStatusResponse(image=image_message(record, pinned), info=info)

    async def ListImages(
        self, request: api_pb2.ListImagesRequest, context: Context
    ) -> api_pb2.ListImagesResponse:
        wanted = request.filter.image.image if request.HasField("filter") else ""
        images = self._images()
        records = images.list(wanted)
        return api_pb2.ListImagesResponse(images=[image_message(r, images.is_pinned(r)) for r in records])

    async def StreamImages(
        self, request: api_pb2.StreamImagesRequest, context: Context
    ) -> AsyncIterator[api_pb2.StreamImagesResponse]:
        """ListImages in batches, each image in exactly one batch (no empty batch is sent)."""
        wanted = request.filter.image.image if request.HasField("filter") else ""
        images = self._images()
        records = images.list(wanted)
        for start in range(0, len(records), STREAM_BATCH):
            batch = records[start : start + STREAM_BATCH]
            yield api_pb2.StreamImagesResponse(images=[image_message(r, images.is_pinned(r)) for r in batch])

    async def RemoveImage(
        self, request: api_pb2.RemoveImageRequest, context: Context
    ) -> api_pb2.RemoveImageResponse:
        await self._images().remove(request.image.image)
        return api_pb2.RemoveImageResponse()

    async def ImageFsInfo(
        self, request: api_pb2.ImageFsInfoRequest, context: Context
    ) -> api_pb2.ImageFsInfoResponse:
        images_root = self._images().content.root
        containers_root = self.services.rootfs.mountpoint()
        # stays on the root's device: merged overlay mounts would count image layers again
        images, containers = await asyncio.gather(
            self._images().tree_usage.measure(), self.services.rootfs.tree_usage.measure()
        )

        def usage(path: str, used: int, inodes: int, at_ns: int) -> api_pb2.FilesystemUsage:
            return api_pb2.FilesystemUsage(
                timestamp=at_ns,
                fs_id=api_pb2.FilesystemIdentifier(mountpoint=path),
                used_bytes=api_pb2.UInt64Value(value=used),
                inodes_used=api_pb2.UInt64Value(value=inodes),
            )

        return api_pb2.ImageFsInfoResponse(
            image_filesystems=[usage(str(images_root), images.used, images.inodes, images.at_ns)],
            container_filesystems=[
                usage(str(containers_root), containers.used, containers.inodes, containers.at_ns)
            ],
        )
