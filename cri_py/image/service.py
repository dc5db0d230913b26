"""The image service: what the ImageService RPCs and the container code ask about images.

Records live in the daemon's database (table `images`); content lives in the content store.
Removal deletes the record first (so no List or Status that starts afterwards can see it)
and then collects blobs and layers no remaining image references.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cri_py import heap
from cri_py.api import api_pb2
from cri_py.config.model import Config
from cri_py.errors import CriError, FailedPrecondition, Internal, InvalidArgument, NotFound
from cri_py.fsusage import TreeUsage, directory_usage
from cri_py.image import archive, build, resolve
from cri_py.image import reference as refs
from cri_py.image.content import ContentStore, remove_retired
from cri_py.image.local import load_json_blob, make_record, parse_manifest, unpack_stored_layers
from cri_py.image.model import ImageRecord
from cri_py.image.pinning import PinnedImages
from cri_py.image.policy import PolicyFile, check, load_policy
from cri_py.image.shared import SharedWork, to_the_end
from cri_py.image.unpack import UnpackLimits
from cri_py.store import Database, RecordTable
from cri_py.tasks import TaskOwner

if TYPE_CHECKING:
    from cri_py.image.pull import Puller, PullResult

log = logging.getLogger(__name__)

_HEX_PREFIX = re.compile(r"^(?:sha256:)?([a-f0-9]{1,64})$")


@dataclass(frozen=True)
class FsUsage:
    mountpoint: Path
    used_bytes: int
    inodes_used: int


class ImageService:
    def __init__(
        self,
        config: Config,
        db: Database,
        *,
        tasks: TaskOwner | None = None,
        in_use: Callable[[str], bool] | None = None,
        limits: UnpackLimits | None = None,
    ) -> None:
        """The daemon passes its task owner and the container store's `image_in_use`; the
        `images` command and tests run one alone (own tasks, no containers)."""
        self.config = config
        self.content = ContentStore(config.root / "images")
        # blobs/sha256 and layers/<id> come and go two levels below the store's root
        self.tree_usage = TreeUsage(self.content.root, depth=2)
        self.limits = limits or UnpackLimits()
        self._images: RecordTable[ImageRecord] = RecordTable(db, "images", ImageRecord.from_dict)
        self._db = db
        self._data_version = self._current_data_version()
        # is any container (running or not) using this image id?
        self.in_use: Callable[[str], bool] = in_use or _no_containers
        self._own_tasks = tasks is None
        self._tasks = tasks or TaskOwner()
        # the registry client (httpx, ~6 MiB) is loaded at the first pull, not by an idle daemon
        self._puller_instance: Puller | None = None
        # one pull per reference, shared by its callers, stopped when the last one leaves
        self._pulls: SharedWork[ImageRecord] = SharedWork(self._tasks.spawn)
        # digests and chain ids an unfinished pull relies on: garbage collection leaves them alone
        self._pinned_content: Counter[str] = Counter()
        self._gc_lock = asyncio.Lock()
        self._pins = PinnedImages(config.pinned_images, config.pause_image)
        self._policy = PolicyFile(config.signature_policy)

    # life cycle

    async def start(self) -> None:
        """Prepare the store, drop leftovers of interrupted pulls, build the pause image if missing.

        A signature policy that cannot be used stops the start (ConfigError): better than a node
        whose every pull fails. Later it is re-read at each pull, as containers/image does."""
        if self.config.signature_policy is not None and self.config.signature_policy.exists():
            load_policy(self.config.signature_policy)
        await asyncio.to_thread(self._prepare)
        await self.ensure_pause_image()

    def _prepare(self) -> None:
        self.content.prepare()
        self.content.cleanup_temporaries()
        # content of a pull that was killed after unpacking but before its record was written
        remove_retired(self._collect_garbage(self._referenced()))

    async def close(self) -> None:
        """After the daemon's tasks (the pulls among them) have ended."""
        await self._pulls.cancel_all()
        if self._own_tasks:
            await self._tasks.close()
        if self._puller_instance is not None:
            await self._puller_instance.close()

    def _puller(self) -> Puller:
        if self._puller_instance is None:
            from cri_py.image.pull import Puller

            self._puller_instance = Puller(self.config, self.content, self.limits, self._tasks)
        return self._puller_instance

    def reload(self, config: Config) -> None:
        """Apply a reloaded config: registries, credentials file and pins count from the next call."""
        self.config = config
        self._pins = PinnedImages(config.pinned_images, config.pause_image)
        if config.signature_policy != self._policy.path:
            self._policy = PolicyFile(config.signature_policy)
        if self._puller_instance is not None:
            self._puller_instance.config = config
            self._puller_instance.client.reload(config)

    def is_pinned(self, record: ImageRecord) -> bool:
        """Pinned by `pinned_images` or as the pause image (computed, so a reload moves pins)."""
        return self._pins.matches([*record.repo_tags, *record.repo_digests])

    async def ensure_pause_image(self) -> ImageRecord:
        name = refs.parse(self.config.pause_image).tagged()
        existing = self._find(name)
        if existing is not None and all(self.content.has_layer(c) for c in existing.layers):
            return existing
        record = self._commit(await asyncio.to_thread(self._build_pause, name))
        log.info("built the pause image %s (%s) from %s", name, record.id, self.config.catatonit)
        return record

    def _build_pause(self, name: str) -> ImageRecord:
        built = build.pause_image(self.config.catatonit)
        self.content.write_blob(built.config)
        for lay in built.layers:
            self.content.write_blob(lay.blob)
        manifest_digest = self.content.write_blob(built.manifest)
        manifest = parse_manifest(built.manifest)
        config = load_json_blob(self.content, built.config_digest)
        chains = unpack_stored_layers(self.content, manifest, config, self.limits)
        return make_record(self.content, manifest_digest, manifest, config, chains, [name], [], pinned=True)

    # lookups

    def _current_data_version(self) -> int:
        return int(self._db.query("PRAGMA data_version")[0][0])

    def _refresh(self) -> None:
        """Pick up images another process wrote (`cri-py images import` next to a running daemon).

        SQLite's data_version changes only when another connection commits, so this costs one
        tiny query per lookup and a reload only after an import.
        """
        version = self._current_data_version()
        if version != self._data_version:
            self._data_version = version
            self._images.reload()

    def _find(self, ref_or_id: str) -> ImageRecord | None:
        if not ref_or_id:
            return None
        self._refresh()
        exact = self._images.get(ref_or_id) or self._images.get("sha256:" + ref_or_id)
        if exact is not None:
            return exact
        try:
            candidates = resolve.local_candidates(self.config.effective_registries, ref_or_id)
        except InvalidArgument:
            candidates = []
        for ref in candidates:
            named = self._find_named(ref)
            if named is not None:
                return named
        # crictl shows truncated ids: accept a unique prefix of at least a few hex digits
        m = _HEX_PREFIX.match(ref_or_id)
        if m and len(m.group(1)) >= 4:
            prefix = "sha256:" + m.group(1)
            found = [r for r in self._images.values() if r.id.startswith(prefix)]
            if len(found) == 1:
                return found[0]
        return None

    def _find_named(self, ref: refs.Reference) -> ImageRecord | None:
        if ref.digest:
            wanted = ref.digested()
            return next((r for r in self._images.values() if wanted in r.repo_digests), None)
        wanted = f"{ref.repository}:{ref.tag or 'latest'}"
        return next((r for r in self._images.values() if wanted in r.repo_tags), None)

    def resolve(self, ref_or_id: str) -> ImageRecord:
        """By id (with or without `sha256:`), tag, digest reference or short name; else NotFound."""
        if not ref_or_id:
            raise InvalidArgument("image reference is required")
        found = self._find(ref_or_id)
        if found is None:
            raise NotFound(f"image {ref_or_id!r} not found")
        return found

    def status(self, ref_or_id: str) -> ImageRecord | None:
        """Like resolve, but an unknown image is None (ImageStatus answers empty, not an error)."""
        if not ref_or_id:
            raise InvalidArgument("image reference is required")
        return self._find(ref_or_id)

    def list(self, filter_ref: str = "") -> builtins.list[ImageRecord]:
        if filter_ref:
            found = self._find(filter_ref)
            return [found] if found is not None else []
        self._refresh()
        return sorted(self._images.values(), key=lambda r: r.id)

    def layer_dirs(self, image: ImageRecord) -> builtins.list[Path]:
        """Unpacked layer directories, bottom -> top."""
        return [self.content.layer_dir(c) for c in image.layers]

    def layer_links(self, image: ImageRecord) -> builtins.list[Path]:
        """Short symlinks to the layer directories (same order as `layer_dirs`)."""
        return [self.content.layer_link(c) for c in image.layers]

    # pull

    async def pull(self, text: str, auth: api_pb2.AuthConfig | None = None) -> ImageRecord:
        """Pull the name, or a short name's candidates in order until one succeeds."""
        candidates = resolve.pull_candidates(self.config.effective_registries, text)
        failures: list[tuple[refs.Reference, CriError]] = []
        for ref in candidates:
            try:
                return await self._pull_one(ref, auth)
            except CriError as exc:
                if len(candidates) == 1:
                    raise
                log.info("pulling candidate %s of %s failed: %s", ref, text, exc)
                failures.append((ref, exc))
        detail = "; ".join(f"{ref}: {exc}" for ref, exc in failures)
        raise type(failures[-1][1])(f"no candidate of short name {text!r} could be pulled: {detail}")

    async def _pull_one(self, parsed: refs.Reference, auth: api_pb2.AuthConfig | None) -> ImageRecord:
        # later callers join a running pull; it stops (and its partial content goes) when no
        # caller waits any more: a retry then starts afresh
        try:
            return await self._pulls.join(str(parsed), lambda: self._pull(parsed, auth))
        finally:
            if not len(self._pulls):
                # the last pull of a burst is done: its buffers are free but still resident
                with contextlib.suppress(RuntimeError):  # the daemon is shutting down
                    self._tasks.spawn(asyncio.to_thread(heap.trim), name="heap trim after pulls")

    async def _pull(self, ref: refs.Reference, auth: api_pb2.AuthConfig | None) -> ImageRecord:
        def hold(keys: Iterable[str]) -> None:
            held.extend(keys)
            self._pinned_content.update(keys)

        held: list[str] = []
        stored = False
        try:
            # refused here, before any connection, when the policy rejects the name outright
            verify = check(self._policy.current(), ref)
            for _attempt in range(3):
                result: PullResult = await self._puller().pull(ref, auth, hold, verify)
                tags = [ref.tagged()] if ref.tag and not ref.digest else []
                record = make_record(
                    self.content,
                    result.manifest_digest,
                    result.manifest,
                    result.config,
                    result.chains,
                    tags,
                    [ref.digested(result.repo_digest)],
                )
                if result.repo_digest not in record.blobs:
                    record = dataclasses.replace(record, blobs=[*record.blobs, result.repo_digest])
                async with self._gc_lock:
                    # a removal running while this pull started may have collected content the
                    # pull found present: commit only a complete image, else fetch what is missing
                    if self._complete(record):
                        record = self._commit(record)
                        stored = True
                        return record
                log.info("content of %s was collected during the pull; fetching it again", ref)
            raise Internal(f"pull of {ref}: image content kept disappearing during the pull")
        except asyncio.CancelledError:
            log.info("pull stopped", extra={"image": str(ref), "reason": "no client waits for it any more"})
            raise
        except CriError as exc:
            # refused (digest mismatch, hostile layer, credentials) or failed (registry down)
            log.info("pull refused", extra={"image": str(ref), "reason": str(exc)})
            raise
        finally:
            self._pinned_content.subtract(held)
            self._pinned_content += Counter()  # drop zero counts
            if not stored and held:
                await to_the_end(self._drop_unreferenced(set(held)))

    async def _drop_unreferenced(self, keys: set[str]) -> None:
        """After a pull that stored nothing: its blobs and layers no image or pull needs."""
        async with self._gc_lock:
            doomed = keys - self._referenced()
            if doomed:
                await asyncio.to_thread(self._delete_content, doomed)
                log.debug("removed %d blobs and layers of an unfinished pull", len(doomed))

    def _delete_content(self, keys: set[str]) -> None:
        for key in keys:
            if self.content.has_layer(key):
                self.content.delete_layer(key)
            if self.content.has_blob(key):
                self.content.delete_blob(key)

    def _complete(self, record: ImageRecord) -> bool:
        return all(self.content.has_layer(c) for c in record.layers) and all(
            self.content.has_blob(b) for b in record.blobs
        )

    def _commit(self, record: ImageRecord) -> ImageRecord:
        """Store a record, merging with an existing one of the same id; a tag moves to it.
        All of it commits together or not at all; returns the record as stored."""
        old = self._images.get(record.id)
        if old is not None:
            record = dataclasses.replace(
                record,
                repo_tags=_merge(old.repo_tags, record.repo_tags),
                repo_digests=_merge(old.repo_digests, record.repo_digests),
                # one config reached through several manifests (OCI and Docker forms): keep them all
                blobs=_merge(old.blobs, record.blobs),
                pinned=record.pinned or old.pinned,
            )
        with self._db.transaction() as tx:
            for other in self._images.values():
                if other.id == record.id:
                    continue
                kept = [t for t in other.repo_tags if t not in record.repo_tags]
                if kept != other.repo_tags:
                    self._images.put(dataclasses.replace(other, repo_tags=kept), tx)
            self._images.put(record, tx)
        return record

    # removal

    async def remove(self, ref_or_id: str) -> None:
        """Remove the image with all its tags and digests; missing is fine, in use is refused."""
        if not ref_or_id:
            raise InvalidArgument("image reference is required")
        async with self._gc_lock:
            record = self._find(ref_or_id)
            if record is None:
                return
            if self.is_pinned(record):
                # kubelet's image GC never asks to remove a pinned image (it skips them), so this
                # only refuses an operator's `crictl rmi`. CRI-O would untag it anyway; we refuse:
                # the pause image is built only at start-up, and removing it breaks every pod start
                # until a restart. The CRI has no force flag: unpin (pinned_images + SIGHUP) first.
                raise FailedPrecondition(
                    f"image {ref_or_id!r} ({record.id}) is pinned (pinned_images or the pause image)"
                    " and is not removed; drop it from pinned_images and reload to remove it"
                )
            if self.in_use(record.id):
                raise FailedPrecondition(f"image {ref_or_id!r} ({record.id}) is in use by a container")
            self._images.delete(record.id)
            retired = await asyncio.to_thread(self._collect_garbage, self._referenced())
        if retired:
            # the layers' files are deleted after the answer (RemoveImage took 2-3x CRI-O's time
            # deleting them first); a crash before that leaves temporaries the next start removes
            with contextlib.suppress(RuntimeError):  # shutting down: the next start removes them
                self._tasks.spawn(asyncio.to_thread(remove_retired, retired), name="remove retired layers")

    def _referenced(self) -> set[str]:
        """Blobs and layers to keep (taken on the loop: pulls change the pins concurrently)."""
        self._refresh()  # an import by another process counts too
        keep: set[str] = {k for k, n in self._pinned_content.items() if n > 0}
        for rec in self._images.values():
            keep.update(rec.blobs)
            keep.update(rec.layers)
        return keep

    def _collect_garbage(self, keep: set[str]) -> builtins.list[Path]:
        """Take what `keep` lacks out of the store; returns the retired layer directories,
        whose files the caller deletes (`remove_retired`)."""
        retired = []
        for chain in self.content.layer_ids():
            if chain not in keep:
                doomed = self.content.retire_layer(chain)
                if doomed is not None:
                    retired.append(doomed)
        for digest in self.content.blob_digests():
            if digest not in keep:
                self.content.delete_blob(digest)
        return retired

    # archives (blocking: the CLI calls these directly, the daemon would use a thread)

    def import_archive(self, path: Path) -> builtins.list[ImageRecord]:
        """Load an OCI layout or docker-archive; returns the images it held."""
        self.content.prepare()
        records = []
        for item in archive.import_archive(path, self.content, self.content.ingest_dir):
            manifest = parse_manifest(self.content.read_blob(item.manifest_digest))
            config = load_json_blob(self.content, manifest["config"]["digest"])
            chains = unpack_stored_layers(self.content, manifest, config, self.limits)
            digests = [refs.parse(n).digested(item.manifest_digest) for n in item.names]
            record = make_record(
                self.content, item.manifest_digest, manifest, config, chains, item.names, digests
            )
            records.append(self._commit(record))
        return records

    def export_archive(self, ref_or_id: str, dest: Path) -> ImageRecord:
        record = self.resolve(ref_or_id)
        archive.export_archive(record, self.content, dest)
        return record

    # usage

    def fs_usage(self) -> FsUsage:
        """Bytes and inodes of the image store as found on disk (blocking: call in a thread)."""
        used, inodes = directory_usage(self.content.root)
        return FsUsage(self.content.root, used, inodes)

    def export_blobs(self, record: ImageRecord) -> dict[str, Any]:
        return {"manifest": record.manifest_digest, "blobs": list(record.blobs)}


def _no_containers(image_id: str) -> bool:
    return False


def _merge(a: list[str], b: list[str]) -> list[str]:
    out = list(a)
    for x in b:
        if x not in out:
            out.append(x)
    return out
