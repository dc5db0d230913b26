"""A throwaway docker-registry on 127.0.0.1 and a minimal OCI push client for it."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from benchlib.util import BenchError, free_port, tcp_ready, wait_until

HACK = Path(__file__).resolve().parents[1]
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


@dataclass(frozen=True)
class Layer:
    blob: bytes  # gzip-compressed tar
    diff_id: str  # sha256 of the uncompressed tar


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class LocalRegistry:
    """docker-registry serving from a directory of its own; stop() kills it."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        config = self.workdir / "registry.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.workdir / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n"
        )
        log = open(self.workdir / "registry.log", "wb")  # noqa: SIM115 - the child keeps it
        self._proc = subprocess.Popen(
            ["docker-registry", "serve", str(config)], stdout=log, stderr=log, stdin=subprocess.DEVNULL
        )
        log.close()
        wait_until(lambda: tcp_ready(self.port), 10, "the test registry to listen")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def _request(
        self, method: str, url: str, data: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str]]:
        if not url.startswith("http"):
            url = f"http://{self.host}{url}"
        req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.status, dict(resp.headers)
        except urllib.error.HTTPError as err:
            if method == "HEAD" and err.code == 404:
                return 404, {}
            raise BenchError(f"registry {method} {url}: {err.code} {err.read()[:200]!r}") from err

    def push_blob(self, repo: str, data: bytes) -> str:
        digest = digest_of(data)
        status, _ = self._request("HEAD", f"/v2/{repo}/blobs/{digest}")
        if status == 200:
            return digest
        _, headers = self._request("POST", f"/v2/{repo}/blobs/uploads/", b"")
        location = headers["Location"]
        sep = "&" if "?" in location else "?"
        self._request(
            "PUT", f"{location}{sep}digest={digest}", data, {"Content-Type": "application/octet-stream"}
        )
        return digest

    def push_image(self, repo: str, tag: str, layers: list[Layer], config: dict[str, object]) -> str:
        """Push an OCI image; returns the reference `host/repo:tag`."""
        full_config = dict(config)
        full_config["rootfs"] = {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]}
        config_blob = json.dumps(full_config, sort_keys=True).encode()
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": OCI_CONFIG,
                "digest": self.push_blob(repo, config_blob),
                "size": len(config_blob),
            },
            "layers": [
                {
                    "mediaType": OCI_LAYER_GZIP,
                    "digest": self.push_blob(repo, layer.blob),
                    "size": len(layer.blob),
                }
                for layer in layers
            ],
        }
        self._request(
            "PUT",
            f"/v2/{repo}/manifests/{tag}",
            json.dumps(manifest).encode(),
            {"Content-Type": OCI_MANIFEST},
        )
        return f"{self.host}/{repo}:{tag}"

    def build_test_images(self, names: list[str]) -> dict[str, str]:
        """The shared test images (hack/build-test-images), pushed here: name -> reference."""
        proc = subprocess.run(
            [
                sys.executable,
                str(HACK / "build-test-images"),
                "--registry",
                self.host,
                "--only",
                ",".join(names),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if proc.returncode != 0:
            raise BenchError(f"hack/build-test-images failed: {proc.stderr[-2000:]}")
        refs: dict[str, str] = json.loads(proc.stdout)
        return refs
