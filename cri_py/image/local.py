"""Turn blobs already in the content store into an unpacked image (pause image, imports)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cri_py.errors import Internal, InvalidArgument
from cri_py.image import mediatypes as mt
from cri_py.image.content import ContentStore, DigestMismatch, chain_ids
from cri_py.image.model import ImageRecord
from cri_py.image.unpack import UnpackLimits, unpack_file


def parse_manifest(data: bytes) -> dict[str, Any]:
    try:
        manifest = json.loads(data)
    except ValueError as exc:
        raise InvalidArgument(f"manifest is not JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("schemaVersion") != 2:
        raise InvalidArgument("only schema version 2 manifests are supported")
    if "config" not in manifest or not isinstance(manifest.get("layers", []), list):
        raise InvalidArgument("manifest has no config or layers")
    return manifest


def diff_ids_of(config: dict[str, Any], manifest: dict[str, Any]) -> list[str]:
    diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
    layers = manifest.get("layers") or []
    if len(diff_ids) != len(layers):
        raise InvalidArgument(f"image config lists {len(diff_ids)} diff ids for {len(layers)} layers")
    return diff_ids


def unpack_stored_layers(
    content: ContentStore, manifest: dict[str, Any], config: dict[str, Any], limits: UnpackLimits
) -> list[str]:
    """Unpack every layer not yet unpacked from its stored blob; blocking (run in a thread)."""
    diff_ids = diff_ids_of(config, manifest)
    chains = chain_ids(diff_ids)
    for desc, diff_id, chain in zip(manifest["layers"], diff_ids, chains, strict=True):
        if content.has_layer(chain):
            continue
        if desc.get("mediaType") not in mt.LAYERS:
            raise InvalidArgument(f"unsupported layer media type {desc.get('mediaType')!r}")
        tmp = content.new_layer_tmp()
        try:
            result = unpack_file(content.blob_path(desc["digest"]), tmp / "diff", limits)
            if result.diff_id != diff_id:
                raise DigestMismatch(
                    f"layer {desc['digest']} unpacks to {result.diff_id}, config says {diff_id}"
                )
            content.commit_layer(tmp, chain)
        except BaseException:
            _rmtree(tmp)
            raise
    return chains


def make_record(
    content: ContentStore,
    manifest_digest: str,
    manifest: dict[str, Any],
    config: dict[str, Any],
    chains: list[str],
    repo_tags: list[str],
    repo_digests: list[str],
    pinned: bool = False,
) -> ImageRecord:
    config_digest = manifest["config"]["digest"]
    layer_digests = [d["digest"] for d in manifest["layers"]]
    blobs = [manifest_digest, config_digest, *layer_digests]
    size = int(manifest["config"].get("size", 0)) + sum(int(d.get("size", 0)) for d in manifest["layers"])
    if size <= 0:
        size = sum(content.blob_size(b) for b in blobs[1:] if content.has_blob(b))
    return ImageRecord(
        id=config_digest,
        repo_tags=repo_tags,
        repo_digests=repo_digests,
        size=size,
        config=config,
        layers=chains,
        pinned=pinned,
        manifest_digest=manifest_digest,
        blobs=blobs,
        annotations=dict(manifest.get("annotations") or {}),
    )


def load_json_blob(content: ContentStore, digest: str) -> dict[str, Any]:
    try:
        value = json.loads(content.read_blob(digest))
    except (OSError, ValueError) as exc:
        raise Internal(f"blob {digest} is missing or not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise Internal(f"blob {digest} is not a JSON object")
    return value


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
