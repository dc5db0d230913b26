"""Sigstore signatures stored in the registry next to the image, and their verification.

The attachment scheme cosign and containers/image use: the signatures of manifest
`sha256:<hex>` are the layers of an OCI image manifest tagged `sha256-<hex>.sig` in the same
repository (fetched from the endpoint that served the image). A signature layer has media type
`application/vnd.dev.cosign.simplesigning.v1+json`; its blob is the signed "simple signing"
payload and its `dev.cosignproject.cosign/signature` annotation the base64 signature.

A signature is accepted when, in this order (containers/image's): it verifies with one of the
requirement's public keys (ECDSA and RSA PKCS#1 v1.5 over SHA-256, or Ed25519, with the
`cryptography` library); its payload parses strictly; its `docker-manifest-digest` is the
digest of the manifest the tag or digest resolved to; its `docker-reference` satisfies the
requirement's `signedIdentity` for the name that was pulled.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from cri_py.errors import InvalidArgument
from cri_py.image import mediatypes as mt
from cri_py.image.policy import Identity, Requirement, reject_duplicate_keys
from cri_py.image.reference import Reference, parse_raw
from cri_py.image.registry import RegistryError, RegistryNotFound, read_limited

if TYPE_CHECKING:
    from cri_py.image.registry import RegistrySession

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
PAYLOAD_TYPE = "cosign container image signature"
MAX_SIGNATURE_BODY = 4 << 20
MAX_SIGNATURES = 64
_HASHES = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}


@dataclass(frozen=True)
class Attachment:
    media_type: str
    payload: bytes
    annotations: dict[str, str]
    digest: str


def attachment_tag(manifest_digest: str) -> str:
    algorithm, _, encoded = manifest_digest.partition(":")
    return f"{algorithm}-{encoded}.sig"


async def fetch_signatures(session: RegistrySession, manifest: bytes) -> list[Attachment]:
    """The sigstore attachments of a manifest ([] when there are none)."""
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    tag = attachment_tag(digest)
    try:
        body, media_type = await session.manifest(tag)
    except RegistryNotFound:
        return []
    where = f"{session.describe()}: sigstore attachments {tag}"
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise RegistryError(f"{where}: not JSON: {exc}") from exc
    if not isinstance(doc, dict) or (doc.get("mediaType") or media_type) != mt.OCI_MANIFEST:
        raise RegistryError(f"{where}: not an OCI image manifest")
    layers = doc.get("layers") or []
    if not isinstance(layers, list) or len(layers) > MAX_SIGNATURES:
        raise RegistryError(f"{where}: layers must be a list of at most {MAX_SIGNATURES}")
    out = []
    for layer in layers:
        if not isinstance(layer, dict) or not isinstance(layer.get("digest"), str):
            raise RegistryError(f"{where}: a layer is not a descriptor")
        if layer.get("mediaType") != SIMPLE_SIGNING:
            out.append(Attachment(str(layer.get("mediaType")), b"", {}, layer["digest"]))
            continue  # attestations and other attachments: never a signature
        size = layer.get("size")
        if not isinstance(size, int) or not 0 <= size <= MAX_SIGNATURE_BODY:
            raise RegistryError(f"{where}: layer {layer['digest']} size must be at most {MAX_SIGNATURE_BODY}")
        async with session.blob(layer["digest"]) as resp:
            payload = await read_limited(resp, MAX_SIGNATURE_BODY, where)
        if not _digest_matches(payload, layer["digest"]) or len(payload) != size:
            raise RegistryError(f"{where}: layer {layer['digest']} does not match its content")
        annotations = layer.get("annotations") or {}
        if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
            raise RegistryError(f"{where}: layer {layer['digest']} annotations are not strings")
        out.append(Attachment(SIMPLE_SIGNING, payload, annotations, layer["digest"]))
    return out


def verify_requirement(
    req: Requirement, ref: Reference, manifest: bytes, attachments: list[Attachment]
) -> str:
    """ "" when a signature satisfies the requirement, else why none does."""
    signatures = [a for a in attachments if a.media_type == SIMPLE_SIGNING]
    if not signatures:
        others = f" ({len(attachments)} other attachments)" if attachments else ""
        return f"a signature is required, but the registry has none for this image{others}"
    reasons = []
    for signature in signatures:
        reason = _check(req, ref, manifest, signature)
        if not reason:
            return ""
        reasons.append(f"signature {signature.digest[:19]}: {reason}")
    if len(reasons) == 1:
        return reasons[0]
    return "none of the signatures is accepted: " + "; ".join(reasons)


def _check(req: Requirement, ref: Reference, manifest: bytes, signature: Attachment) -> str:
    encoded = signature.annotations.get(SIGNATURE_ANNOTATION)
    if encoded is None:
        return f"no {SIGNATURE_ANNOTATION} annotation"
    try:
        raw = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        return "the signature annotation is not base64"
    if not any(verifies(key, raw, signature.payload) for key in req.keys):
        return f"does not verify with the public key(s) of {req.key_source}"
    try:
        digest, identity = parse_payload(signature.payload)
    except ValueError as exc:
        return f"invalid signed payload: {exc}"
    if not _digest_matches(manifest, digest):
        return f"is for manifest {digest}, not for this image's"
    try:
        signed = parse_raw(identity)
    except InvalidArgument:
        return f"signs the invalid identity {identity!r}"
    if not identity_matches(req.identity, ref, signed):
        return f"is for {identity!r}, which {req.identity.type} does not accept for {ref}"
    return ""


def verifies(key: Any, signature: bytes, payload: bytes) -> bool:
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, payload, padding.PKCS1v15(), hashes.SHA256())
        else:
            key.verify(signature, payload)
    except (InvalidSignature, ValueError):
        return False
    return True


def _exact(value: Any, fields: set[str], what: str) -> dict[str, Any]:
    if not isinstance(value, dict) or set(value) != fields:
        raise ValueError(f"{what} must have exactly the fields {', '.join(sorted(fields))}")
    return value


def parse_payload(payload: bytes) -> tuple[str, str]:
    """The signed manifest digest and docker reference of a simple-signing payload."""
    try:
        doc = json.loads(payload, object_pairs_hook=reject_duplicate_keys)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    top = _exact(doc, {"critical", "optional"}, "the payload")
    optional = top["optional"]
    if optional is not None:
        if not isinstance(optional, dict):
            raise ValueError("optional must be an object or null")
        if "creator" in optional and not isinstance(optional["creator"], str):
            raise ValueError("optional.creator must be a string")
        stamp = optional.get("timestamp")
        if stamp is not None and (not isinstance(stamp, int | float) or int(stamp) != stamp):
            raise ValueError("optional.timestamp must be an integer")
    critical = _exact(top["critical"], {"type", "image", "identity"}, "critical")
    if critical["type"] != PAYLOAD_TYPE:
        raise ValueError(f"unrecognized signature type {critical['type']!r}")
    image = _exact(critical["image"], {"docker-manifest-digest"}, "critical.image")
    identity = _exact(critical["identity"], {"docker-reference"}, "critical.identity")
    digest, reference = image["docker-manifest-digest"], identity["docker-reference"]
    if not isinstance(digest, str) or digest.partition(":")[0] not in _HASHES:
        raise ValueError(f"unsupported docker-manifest-digest {digest!r}")
    if not isinstance(reference, str):
        raise ValueError("docker-reference must be a string")
    return digest, reference


def _digest_matches(data: bytes, digest: str) -> bool:
    algorithm, _, encoded = digest.partition(":")
    hasher = _HASHES.get(algorithm)
    return hasher is not None and hasher(data).hexdigest() == encoded


def identity_matches(rule: Identity, intended: Reference, signed: Reference) -> bool:
    """containers-policy.json(5)'s signedIdentity semantics, on normalized references."""

    def exact(a: Reference, b: Reference) -> bool:
        return bool(a.tag or a.digest) and bool(b.tag or b.digest) and str(a) == str(b)

    def repo_digest_or_exact(want: Reference) -> bool:
        if want.tag:
            return str(signed) == str(want)
        if want.digest:
            return signed.repository == want.repository
        return False

    if rule.type == "matchExact":
        return exact(intended, signed)
    if rule.type == "matchRepoDigestOrExact":
        return repo_digest_or_exact(intended)
    if rule.type == "matchRepository":
        return signed.repository == intended.repository
    if rule.type == "exactReference":
        return rule.reference is not None and exact(rule.reference, signed)
    if rule.type == "exactRepository":
        return rule.reference is not None and signed.repository == rule.reference.repository
    if rule.type == "remapIdentity":
        name = intended.repository
        if name == rule.prefix or name.startswith(rule.prefix + "/"):
            suffix = str(intended)[len(rule.prefix) :]
            try:
                intended = parse_raw(rule.signed_prefix + suffix)
            except InvalidArgument:
                return False
        return repo_digest_or_exact(intended)
    return False
