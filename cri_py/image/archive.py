"""Image archives for air-gapped nodes: OCI image layout and docker-archive tarballs.

Import reads either format (a tarball, or an OCI layout directory), checks every blob
against its digest while copying it into the content store, and unpacks the layers.
Export writes one tarball that is both an OCI layout (`oci-layout`, `index.json`, `blobs/`)
and a docker-archive (`manifest.json` pointing into the same blobs), as containerd does.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cri_py.errors import InvalidArgument
from cri_py.image import mediatypes as mt
from cri_py.image import reference as refs
from cri_py.image.build import canonical_json
from cri_py.image.content import ContentStore, DigestMismatch
from cri_py.image.model import ImageRecord
from cri_py.image.platforms import select_platform

REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
_CHUNK = 1 << 20


@dataclass
class ImportedImage:
    manifest_digest: str
    names: list[str]  # fully qualified repo:tag names


def _copy_verified(src: Path, content: ContentStore, digest: str | None) -> str:
    """Copy a file into the store as a blob; with a digest given, it must match."""
    fd, tmp = content.new_ingest()
    sha = hashlib.sha256()
    try:
        with open(src, "rb") as fin, os.fdopen(fd, "wb") as fout:
            while chunk := fin.read(_CHUNK):
                sha.update(chunk)
                fout.write(chunk)
            fout.flush()
            os.fsync(fout.fileno())
        actual = "sha256:" + sha.hexdigest()
        if digest is not None and actual != digest:
            raise DigestMismatch(f"{src.name}: content hashes to {actual}, expected {digest}")
        if not content.has_blob(actual):
            content.commit_blob(tmp, actual)
        return actual
    finally:
        tmp.unlink(missing_ok=True)


def _safe_extract(archive: Path, dest: Path) -> None:
    """Archives hold only regular files and directories; anything else is refused."""
    with tarfile.open(archive) as tar:
        for member in tar:
            name = os.path.normpath(member.name.lstrip("/"))
            if name.startswith("..") or os.path.isabs(name):
                raise InvalidArgument(f"archive entry {member.name!r} points outside the archive")
            target = dest / name
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
            elif member.isfile():
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None
                with source, open(target, "wb") as out:
                    shutil.copyfileobj(source, out, _CHUNK)
            elif member.issym() or member.islnk():
                # docker-archive may link identical layers: copy the earlier file
                link = os.path.normpath(
                    os.path.join(os.path.dirname(name), member.linkname)
                    if member.issym()
                    else member.linkname.lstrip("/")
                )
                if link.startswith("..") or not (dest / link).is_file():
                    raise InvalidArgument(
                        f"archive link {member.name!r} -> {member.linkname!r} is not allowed"
                    )
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(dest / link, target)
            else:
                raise InvalidArgument(f"archive entry {member.name!r} has an unsupported type")


def _normalize_name(name: str) -> str:
    return refs.parse(name).tagged() if name else ""


def import_archive(path: Path, content: ContentStore, work_dir: Path) -> list[ImportedImage]:
    """Load an OCI layout (tarball or directory) or a docker-archive into the content store."""
    if path.is_dir():
        root = path
        tmp: Path | None = None
    else:
        tmp = Path(tempfile.mkdtemp(dir=work_dir, prefix="import-"))
        root = tmp
        try:
            _safe_extract(path, root)
        except tarfile.TarError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise InvalidArgument(f"{path} is not a tar archive: {exc}") from exc
    try:
        if (root / "index.json").is_file() and (root / "blobs").is_dir():
            return _import_oci(root, content)
        if (root / "manifest.json").is_file():
            return _import_docker(root, content)
        raise InvalidArgument(f"{path} is neither an OCI image layout nor a docker-archive")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _blob_file(root: Path, digest: str) -> Path:
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or not refs.is_digest(digest):
        raise InvalidArgument(f"unsupported digest {digest!r}")
    return root / "blobs" / algo / hexpart


def _import_oci(root: Path, content: ContentStore) -> list[ImportedImage]:
    index = json.loads((root / "index.json").read_text())
    out: list[ImportedImage] = []
    for desc in index.get("manifests") or []:
        annotations = desc.get("annotations") or {}
        name = annotations.get(CONTAINERD_NAME) or annotations.get(REF_NAME) or ""
        if name and ":" not in name.rsplit("/", 1)[-1] and "/" not in name:
            # a bare tag ("latest") names no repository: import the image untagged
            name = ""
        digest = desc["digest"]
        if desc.get("mediaType") in mt.INDEXES:
            nested = json.loads(_blob_file(root, digest).read_bytes())
            _copy_verified(_blob_file(root, digest), content, digest)
            digest = select_platform(nested)["digest"]
        manifest_bytes = _blob_file(root, digest).read_bytes()
        manifest = json.loads(manifest_bytes)
        for d in [manifest["config"], *manifest.get("layers", [])]:
            _copy_verified(_blob_file(root, d["digest"]), content, d["digest"])
        _copy_verified(_blob_file(root, digest), content, digest)
        out.append(ImportedImage(digest, [_normalize_name(name)] if name else []))
    return out


def _sniff_layer_type(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(b"\x1f\x8b"):
        return mt.DOCKER_LAYER_GZIP
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return mt.DOCKER_LAYER_ZSTD
    return mt.DOCKER_LAYER


def _import_docker(root: Path, content: ContentStore) -> list[ImportedImage]:
    entries = json.loads((root / "manifest.json").read_text())
    out: list[ImportedImage] = []
    for entry in entries:
        config_path = root / entry["Config"]
        config_digest = _copy_verified(config_path, content, None)
        layers = []
        for layer in entry.get("Layers") or []:
            layer_path = root / layer
            digest = _copy_verified(layer_path, content, None)
            layers.append(
                {
                    "mediaType": _sniff_layer_type(layer_path),
                    "digest": digest,
                    "size": layer_path.stat().st_size,
                }
            )
        manifest = {
            "schemaVersion": 2,
            "mediaType": mt.DOCKER_MANIFEST,
            "config": {
                "mediaType": mt.DOCKER_CONFIG,
                "digest": config_digest,
                "size": config_path.stat().st_size,
            },
            "layers": layers,
        }
        manifest_digest = content.write_blob(canonical_json(manifest))
        names = [_normalize_name(t) for t in entry.get("RepoTags") or []]
        out.append(ImportedImage(manifest_digest, names))
    return out


def export_archive(record: ImageRecord, content: ContentStore, dest: Path) -> None:
    """Write one image as an OCI layout + docker-archive tarball."""
    manifest_bytes = content.read_blob(record.manifest_digest)
    manifest = json.loads(manifest_bytes)
    digests = [
        record.manifest_digest,
        manifest["config"]["digest"],
        *(d["digest"] for d in manifest["layers"]),
    ]
    name = record.repo_tags[0] if record.repo_tags else ""
    desc: dict[str, Any] = {
        "mediaType": manifest.get("mediaType") or mt.OCI_MANIFEST,
        "digest": record.manifest_digest,
        "size": len(manifest_bytes),
    }
    if name:
        desc["annotations"] = {CONTAINERD_NAME: name, REF_NAME: refs.parse(name).tag}
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [desc]}
    docker_manifest = [
        {
            "Config": f"blobs/sha256/{manifest['config']['digest'].split(':', 1)[1]}",
            "RepoTags": [refs.parse(t).familiar() for t in record.repo_tags],
            "Layers": [f"blobs/sha256/{d['digest'].split(':', 1)[1]}" for d in manifest["layers"]],
        }
    ]
    tmp = dest.with_name(f".{dest.name}.tmp")
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:

            def add_bytes(arcname: str, data: bytes) -> None:
                info = tarfile.TarInfo(arcname)
                info.size = len(data)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))

            add_bytes("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
            add_bytes("index.json", canonical_json(index))
            add_bytes("manifest.json", canonical_json(docker_manifest))
            seen: set[str] = set()
            for digest in digests:
                if digest in seen:
                    continue
                seen.add(digest)
                path = content.blob_path(digest)
                info = tar.gettarinfo(str(path), arcname=f"blobs/sha256/{digest.split(':', 1)[1]}")
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mode = 0o644
                with open(path, "rb") as f:
                    tar.addfile(info, f)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
