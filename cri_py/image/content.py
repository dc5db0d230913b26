"""The content store: blobs by digest and unpacked layers by chain id, under `<root>/images`.

Nothing half-written is ever visible under its final name: blobs are written to `ingest/`
and renamed after their digest and size checked out; layers are unpacked into a temporary
directory beside `layers/` and renamed into place. A crash leaves only temporaries, which
`cleanup_temporaries()` removes at start-up.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from cri_py.errors import Internal, InvalidArgument
from cri_py.image.reference import is_digest

_TMP_PREFIX = ".tmp-"


def chain_ids(diff_ids: Iterable[str]) -> list[str]:
    """ChainID(L0) = DiffID(L0); ChainID(L0..n) = sha256(ChainID(L0..n-1) + " " + DiffID(n))."""
    out: list[str] = []
    for diff_id in diff_ids:
        if not out:
            out.append(diff_id)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {diff_id}".encode()).hexdigest())
    return out


def _hex(digest: str) -> str:
    if not is_digest(digest):
        raise InvalidArgument(f"unsupported digest {digest!r} (only sha256 is supported)")
    return digest.split(":", 1)[1]


class DigestMismatch(Internal):
    """Content did not hash to what its descriptor says."""


class ContentStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs_dir = root / "blobs" / "sha256"
        self.ingest_dir = root / "ingest"
        self.layers_dir = root / "layers"
        # short names for layer dirs keep the overlay lowerdir option within one page
        self.links_dir = root / "l"
        self.empty_dir = root / "empty"

    def prepare(self) -> None:
        for d in (self.blobs_dir, self.ingest_dir, self.layers_dir, self.links_dir, self.empty_dir):
            d.mkdir(parents=True, exist_ok=True)

    def cleanup_temporaries(self) -> None:
        for entry in self.ingest_dir.iterdir():
            _remove(entry)
        for entry in self.layers_dir.iterdir():
            if entry.name.startswith(_TMP_PREFIX):
                _remove(entry)

    # blobs

    def blob_path(self, digest: str) -> Path:
        return self.blobs_dir / _hex(digest)

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def blob_size(self, digest: str) -> int:
        return self.blob_path(digest).stat().st_size

    def read_blob(self, digest: str) -> bytes:
        return self.blob_path(digest).read_bytes()

    def new_ingest(self) -> tuple[int, Path]:
        """A temporary file for a blob being written; commit it with `commit_blob`."""
        fd, name = tempfile.mkstemp(dir=self.ingest_dir, prefix="blob-")
        return fd, Path(name)

    def commit_blob(self, tmp: Path, digest: str) -> Path:
        final = self.blob_path(digest)
        os.replace(tmp, final)
        return final

    def write_blob(self, data: bytes, digest: str | None = None) -> str:
        """Store small content (manifests, configs) after checking its digest."""
        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        if digest is not None and digest != actual:
            raise DigestMismatch(f"content digest {actual} does not match expected {digest}")
        final = self.blob_path(actual)
        if final.is_file():
            return actual
        fd, tmp = self.new_ingest()
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            self.commit_blob(tmp, actual)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return actual

    def delete_blob(self, digest: str) -> None:
        self.blob_path(digest).unlink(missing_ok=True)

    def blob_digests(self) -> list[str]:
        return ["sha256:" + p.name for p in self.blobs_dir.iterdir()]

    # layers

    def layer_dir(self, chain_id: str) -> Path:
        """The unpacked content of a layer (an overlay lowerdir)."""
        return self.layers_dir / _hex(chain_id) / "diff"

    def layer_link(self, chain_id: str) -> Path:
        """A short symlink to `layer_dir` (26 characters shorter per layer than the long form)."""
        return self.links_dir / _hex(chain_id)[:16]

    def has_layer(self, chain_id: str) -> bool:
        return self.layer_dir(chain_id).is_dir()

    def new_layer_tmp(self) -> Path:
        """An empty directory to unpack into; its `diff` subdirectory is what gets unpacked."""
        tmp = Path(tempfile.mkdtemp(dir=self.layers_dir, prefix=_TMP_PREFIX))
        (tmp / "diff").mkdir()
        return tmp

    def commit_layer(self, tmp: Path, chain_id: str) -> Path:
        final = self.layers_dir / _hex(chain_id)
        try:
            os.rename(tmp, final)
        except OSError:
            if not self.has_layer(chain_id):
                raise
            # another pull of a shared layer got there first: keep theirs
            _remove(tmp)
        link = self.layer_link(chain_id)
        if not link.is_symlink():
            tmp_link = self.links_dir / f"{_TMP_PREFIX}{os.getpid()}-{link.name}"
            tmp_link.unlink(missing_ok=True)
            os.symlink(f"../layers/{_hex(chain_id)}/diff", tmp_link)
            os.replace(tmp_link, link)
        return self.layer_dir(chain_id)

    def delete_layer(self, chain_id: str) -> None:
        doomed = self.retire_layer(chain_id)
        if doomed is not None:
            _remove(doomed)

    def retire_layer(self, chain_id: str) -> Path | None:
        """Take a layer out of the store at once: its link goes and its directory is renamed to
        a temporary, so a half-deleted layer is never mistaken for a complete one. The caller
        deletes the returned directory (`remove_retired`), or the next start does."""
        self.layer_link(chain_id).unlink(missing_ok=True)
        final = self.layers_dir / _hex(chain_id)
        if not final.exists():
            return None
        doomed = Path(tempfile.mkdtemp(dir=self.layers_dir, prefix=_TMP_PREFIX))
        os.rename(final, doomed / "x")
        return doomed

    def layer_ids(self) -> list[str]:
        return ["sha256:" + p.name for p in self.layers_dir.iterdir() if not p.name.startswith(_TMP_PREFIX)]


def remove_retired(paths: Iterable[Path]) -> None:
    """Delete the directories `retire_layer` left (blocking: a thread's work)."""
    for path in paths:
        _remove(path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
