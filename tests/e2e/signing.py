"""Sign images in a test registry the way cosign and containers/image store sigstore signatures.

A simple-signing payload names the manifest digest and the image identity; it is signed with a
key generated here (ECDSA P-256, cosign's default kind) and stored as a layer of an OCI image
manifest tagged `sha256-<hex>.sig` in the image's repository, the signature in the layer's
`dev.cosignproject.cosign/signature` annotation.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cri_py.image import build
from cri_py.image import mediatypes as mt
from cri_py.image.push import Pusher

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"


@dataclass
class SigningKey:
    private: ec.EllipticCurvePrivateKey

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def write_public(self, path: Path) -> Path:
        path.write_bytes(self.public_pem())
        return path

    def sign(self, payload: bytes) -> str:
        return base64.b64encode(self.private.sign(payload, ec.ECDSA(hashes.SHA256()))).decode()


def payload(manifest_digest: str, identity: str, optional: Any = None) -> bytes:
    return json.dumps(
        {
            "critical": {
                "identity": {"docker-reference": identity},
                "image": {"docker-manifest-digest": manifest_digest},
                "type": "cosign container image signature",
            },
            "optional": optional,
        }
    ).encode()


def small_image(name: str) -> build.BuiltImage:
    """A one-file image whose digest differs per name."""
    layer = build.layer([build.Entry("hello.txt", data=f"hello from {name}\n".encode())])
    return build.image([layer], cmd=["/hello.txt"], labels={"name": name})


def push_image(host: str, repo: str, tag: str, name: str) -> str:
    """Push a small image; returns its manifest digest."""
    with Pusher(f"http://{host}") as push:
        return push.image(repo, tag, small_image(name))


def push_signatures(host: str, repo: str, manifest_digest: str, signed: list[tuple[bytes, str]]) -> None:
    """Store (payload, base64 signature) pairs as the sigstore attachments of a manifest."""
    layers = []
    with Pusher(f"http://{host}") as push:
        for body, signature in signed:
            layers.append(
                {
                    "mediaType": SIMPLE_SIGNING,
                    "digest": push.blob(repo, body),
                    "size": len(body),
                    "annotations": {SIGNATURE_ANNOTATION: signature},
                }
            )
        config = build.canonical_json(
            {
                "architecture": "",
                "os": "",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": [layer["digest"] for layer in layers]},
            }
        )
        manifest = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": {"mediaType": mt.OCI_CONFIG, "digest": push.blob(repo, config), "size": len(config)},
            "layers": layers,
        }
        tag = manifest_digest.replace(":", "-") + ".sig"
        push.manifest(repo, tag, build.canonical_json(manifest), mt.OCI_MANIFEST)


def sign_image(host: str, repo: str, manifest_digest: str, key: SigningKey, identity: str) -> None:
    body = payload(manifest_digest, identity)
    push_signatures(host, repo, manifest_digest, [(body, key.sign(body))])
