"""The persisted description of one image; layer content lives in the content store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ImageRecord:
    """A value: an update is a new record (`dataclasses.replace`), never this one changed."""

    # "sha256:<hex of the config digest>": PullImageResponse.image_ref == Image.id
    id: str
    repo_tags: list[str]
    repo_digests: list[str]
    # compressed bytes as stored: config + layer blobs (what crictl shows)
    size: int
    # the image config JSON as pulled (config.User, Env, Entrypoint, Cmd, WorkingDir, ...)
    config: dict[str, Any]
    # chain ids, bottom -> top
    layers: list[str]
    pinned: bool = False
    # manifest digest and the blobs it references, so export and removal know what belongs here
    manifest_digest: str = ""
    blobs: list[str] = field(default_factory=list)
    annotations: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "repo_tags": list(self.repo_tags),
            "repo_digests": list(self.repo_digests),
            "size": self.size,
            "config": self.config,
            "layers": list(self.layers),
            "pinned": self.pinned,
            "manifest_digest": self.manifest_digest,
            "blobs": list(self.blobs),
            "annotations": dict(self.annotations),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImageRecord:
        return cls(
            id=data["id"],
            repo_tags=list(data.get("repo_tags", [])),
            repo_digests=list(data.get("repo_digests", [])),
            size=int(data.get("size", 0)),
            config=dict(data.get("config", {})),
            layers=list(data.get("layers", [])),
            pinned=bool(data.get("pinned", False)),
            manifest_digest=str(data.get("manifest_digest", "")),
            blobs=list(data.get("blobs", [])),
            annotations=dict(data.get("annotations", {})),
        )

    @property
    def user(self) -> str:
        """The image's configured user ("" = root), as `config.User` says it."""
        cfg = self.config.get("config") or {}
        return str(cfg.get("User") or "")

    def uid_and_username(self) -> tuple[int | None, str]:
        """CRI Image.uid / Image.username: a numeric user goes to uid, a name to username."""
        user = self.user.split(":", 1)[0]
        if not user:
            return None, ""
        if user.isdigit():
            return int(user), ""
        return None, user
