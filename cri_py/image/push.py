"""Push built images to a registry (test registries and `hack/build-test-images`).

Monolithic uploads: POST an upload session, PUT the blob with `digest=` appended to the
Location's own query (replacing the query breaks docker-registry's `_state`).
"""

from __future__ import annotations

from urllib.parse import urljoin

import httpx

from cri_py.image import mediatypes as mt
from cri_py.image.build import BuiltImage, digest_of


class PushError(Exception):
    pass


class Pusher:
    def __init__(self, base_url: str, auth: tuple[str, str] | None = None, verify: bool | str = True) -> None:
        self.base = base_url.rstrip("/")
        self._http = httpx.Client(timeout=120.0, auth=auth, verify=verify)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Pusher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def blob(self, repo: str, data: bytes) -> str:
        digest = digest_of(data)
        head = self._http.head(f"{self.base}/v2/{repo}/blobs/{digest}")
        if head.status_code == 200:
            return digest
        start = self._http.post(f"{self.base}/v2/{repo}/blobs/uploads/")
        if start.status_code != 202:
            raise PushError(f"upload start for {repo}: {start.status_code} {start.text[:200]}")
        location = urljoin(f"{self.base}/", start.headers["location"])
        sep = "&" if "?" in location else "?"
        put = self._http.put(
            f"{location}{sep}digest={digest}",
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        if put.status_code != 201:
            raise PushError(f"blob {digest} to {repo}: {put.status_code} {put.text[:200]}")
        return digest

    def manifest(self, repo: str, reference: str, body: bytes, media_type: str) -> str:
        resp = self._http.put(
            f"{self.base}/v2/{repo}/manifests/{reference}", content=body, headers={"Content-Type": media_type}
        )
        if resp.status_code != 201:
            raise PushError(f"manifest {repo}:{reference}: {resp.status_code} {resp.text[:300]}")
        return digest_of(body)

    def image(self, repo: str, tag: str, image: BuiltImage, layer_blobs: list[bytes] | None = None) -> str:
        """Push an image's blobs and manifest; returns the manifest digest."""
        for blob in layer_blobs if layer_blobs is not None else [lay.blob for lay in image.layers]:
            self.blob(repo, blob)
        self.blob(repo, image.config)
        return self.manifest(repo, tag, image.manifest, image.media_type)

    def index(self, repo: str, tag: str, images: list[BuiltImage], index_body: bytes) -> str:
        for img in images:
            self.image(repo, img.manifest_digest, img)
        return self.manifest(repo, tag, index_body, mt.OCI_INDEX)
