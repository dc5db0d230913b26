"""containers-policy.json(5): parsing, scope order, identities, sigstore payloads and signatures."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from cri_py.config import ConfigError
from cri_py.image.policy import (
    Identity,
    PolicyFile,
    PolicyFileError,
    PolicyRejected,
    check,
    docker_scopes,
    load_policy,
)
from cri_py.image.reference import parse, parse_raw
from cri_py.image.sigstore import (
    SIGNATURE_ANNOTATION,
    SIMPLE_SIGNING,
    Attachment,
    identity_matches,
    parse_payload,
    verifies,
    verify_requirement,
)

MANIFEST = b'{"schemaVersion": 2}'
DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()


def pem(private: Any) -> bytes:
    return private.public_key().public_bytes(  # type: ignore[no-any-return]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def write(path: Path, policy: Any) -> Path:
    path.write_text(policy if isinstance(policy, str) else json.dumps(policy))
    return path


def test_scopes_most_specific_first() -> None:
    assert docker_scopes(parse("a.b.example.com:5000/ns/app:1")) == [
        "a.b.example.com:5000/ns/app:1",
        "a.b.example.com:5000/ns/app",
        "a.b.example.com:5000/ns",
        "a.b.example.com:5000",
        "*.b.example.com",
        "*.example.com",
        "*.com",
    ]
    digest = "sha256:" + "ab" * 32
    assert docker_scopes(parse(f"busybox@{digest}"))[:3] == [
        f"docker.io/library/busybox@{digest}",
        "docker.io/library/busybox",
        "docker.io/library",
    ]


def test_the_most_specific_scope_decides(tmp_path: Path) -> None:
    policy = load_policy(
        write(
            tmp_path / "p.json",
            {
                "default": [{"type": "reject"}],
                "transports": {
                    "docker": {
                        "": [{"type": "insecureAcceptAnything"}],
                        "reg.example": [{"type": "reject"}],
                        "reg.example/team/app": [{"type": "insecureAcceptAnything"}],
                        "*.corp.example": [{"type": "reject"}],
                    },
                    "atomic": {
                        "x.example/y": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/nope"}]
                    },
                },
            },
        )
    )

    def where(name: str) -> str:
        return policy.requirements_for(parse(name))[0].where

    assert where("reg.example/team/app:1") == 'transports.docker["reg.example/team/app"][0]'
    assert where("reg.example/other:1") == 'transports.docker["reg.example"][0]'
    assert where("a.corp.example/x:1") == 'transports.docker["*.corp.example"][0]'
    assert where("busybox") == 'transports.docker[""][0]'
    with pytest.raises(
        PolicyRejected, match=r'is rejected by signature policy .*: transports.docker\["reg.example"\]'
    ):
        check(policy, parse("reg.example/other:1"))
    assert check(policy, parse("reg.example/team/app:1")) is None  # nothing left to verify
    only_default = load_policy(write(tmp_path / "d.json", {"default": [{"type": "reject"}]}))
    assert only_default.requirements_for(parse("busybox"))[0].where == "default[0]"


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ("{", "invalid policy JSON"),
        ('{"default": [{"type": "reject"}], "default": []}', "duplicate field 'default'"),
        ({"transports": {}}, "default: is required"),
        ({"default": []}, "default: expected a non-empty list"),
        ({"default": [{"type": "reject"}], "extra": 1}, "extra: unknown field"),
        ({"default": [{"type": "reject", "why": "x"}]}, "default[0].why: unknown field"),
        ({"default": [{"type": "maybe"}]}, "unknown requirement type 'maybe'"),
        (
            {"default": [{"type": "signedBy", "keyType": "GPGKeys"}]},
            "signedBy (GPG simple signing) is not supported",
        ),
        ({"default": [{"type": "sigstoreSigned"}]}, "exactly one of keyPath, keyPaths, keyData, keyDatas"),
        (
            {"default": [{"type": "sigstoreSigned", "fulcio": {}}]},
            "default[0].fulcio: is not supported by cri-py",
        ),
        ({"default": [{"type": "sigstoreSigned", "keyPath": "/nonexistent.pub"}]}, "/nonexistent.pub"),
        ({"default": [{"type": "sigstoreSigned", "keyData": "bm90IGEga2V5"}]}, "not a PEM public key"),
        (
            {"default": [{"type": "reject"}], "transports": {"docker": {"busybox/x": [{"type": "reject"}]}}},
            "registry host",
        ),
        (
            {"default": [{"type": "reject"}], "transports": {"docker": {"*.a/b": [{"type": "reject"}]}}},
            "wildcard",
        ),
    ],
)
def test_broken_policies_name_file_and_field(tmp_path: Path, policy: Any, message: str) -> None:
    path = write(tmp_path / "policy.json", policy)
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_policy_file_follows_changes(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    watched = PolicyFile(path)
    assert watched.current() is None  # no file: accept everything
    write(path, {"default": [{"type": "reject"}]})
    with pytest.raises(PolicyRejected):
        check(watched.current(), parse("busybox"))
    write(path, '{"default": [')
    with pytest.raises(PolicyFileError, match="no image is accepted"):
        watched.current()
    assert PolicyFile(None).current() is None


def test_identity_rules() -> None:
    tagged, other_tag = parse("reg.example/app:1"), parse_raw("reg.example/app:2")
    by_digest = parse(f"reg.example/app@{DIGEST}")
    signed_1 = parse_raw("reg.example/app:1")
    repo_only = parse_raw("reg.example/app")
    assert identity_matches(Identity("matchRepoDigestOrExact"), tagged, signed_1)
    assert not identity_matches(Identity("matchRepoDigestOrExact"), tagged, other_tag)
    assert not identity_matches(Identity("matchRepoDigestOrExact"), tagged, repo_only)  # cosign's form
    assert identity_matches(Identity("matchRepoDigestOrExact"), by_digest, other_tag)
    assert identity_matches(Identity("matchRepository"), tagged, repo_only)
    assert not identity_matches(Identity("matchRepository"), tagged, parse_raw("reg.example/else:1"))
    assert identity_matches(Identity("matchExact"), tagged, signed_1)
    assert not identity_matches(Identity("matchExact"), by_digest, other_tag)
    exact = Identity("exactReference", reference=parse_raw("vendor.example/app:7"))
    assert identity_matches(exact, tagged, parse_raw("vendor.example/app:7"))
    assert not identity_matches(exact, tagged, signed_1)
    repo = Identity("exactRepository", reference=parse_raw("vendor.example/app"))
    assert identity_matches(repo, tagged, parse_raw("vendor.example/app:anything"))
    remap = Identity("remapIdentity", prefix="mirror.example/vendor", signed_prefix="vendor.example")
    assert identity_matches(remap, parse("mirror.example/vendor/app:1"), parse_raw("vendor.example/app:1"))
    assert not identity_matches(
        remap, parse("mirror.example/vendor/app:1"), parse_raw("mirror.example/vendor/app:1")
    )
    # busybox and docker.io/library/busybox are one identity
    assert identity_matches(Identity(), parse("busybox"), parse_raw("docker.io/library/busybox:latest"))


def signed_payload(digest: str = DIGEST, identity: str = "reg.example/app:1", **extra: Any) -> bytes:
    doc: dict[str, Any] = {
        "critical": {
            "identity": {"docker-reference": identity},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": extra or None,
    }
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["critical"].update(extra=1), "critical must have exactly the fields"),
        (lambda d: d.update(more=1), "the payload must have exactly"),
        (lambda d: d["critical"].update(type="atomic container signature"), "unrecognized signature type"),
        (lambda d: d["critical"]["image"].update(tag="x"), "critical.image must have exactly"),
        (lambda d: d.update(optional={"timestamp": 1.5}), "optional.timestamp must be an integer"),
        (lambda d: d.update(optional={"creator": 3}), "optional.creator must be a string"),
        (lambda d: d["critical"]["image"].update({"docker-manifest-digest": "md5:00"}), "unsupported"),
    ],
)
def test_payload_parsing_is_strict(mutate: Any, message: str) -> None:
    doc = json.loads(signed_payload())
    mutate(doc)
    with pytest.raises(ValueError, match=message):
        parse_payload(json.dumps(doc).encode())


def test_payload_optional_fields() -> None:
    assert parse_payload(signed_payload(creator="cosign", timestamp=1700000000, note="kept")) == (
        DIGEST,
        "reg.example/app:1",
    )
    with pytest.raises(ValueError, match="duplicate"):
        parse_payload(b'{"critical": {}, "critical": {}, "optional": null}')


def test_keys_of_every_supported_kind_verify() -> None:
    data = b"payload"
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ed_key = ed25519.Ed25519PrivateKey.generate()
    assert verifies(ec_key.public_key(), ec_key.sign(data, ec.ECDSA(hashes.SHA256())), data)
    assert verifies(rsa_key.public_key(), rsa_key.sign(data, padding.PKCS1v15(), hashes.SHA256()), data)
    assert verifies(ed_key.public_key(), ed_key.sign(data), data)
    assert not verifies(ec_key.public_key(), ec_key.sign(b"other", ec.ECDSA(hashes.SHA256())), data)
    assert not verifies(ec_key.public_key(), b"garbage", data)


def test_verify_requirement_reasons(tmp_path: Path) -> None:
    key, stranger = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "k.pub").write_bytes(pem(key))
    policy = load_policy(
        write(
            tmp_path / "p.json", {"default": [{"type": "sigstoreSigned", "keyPath": str(tmp_path / "k.pub")}]}
        )
    )
    [req] = policy.requirements_for(parse("reg.example/app:1"))
    ref = parse("reg.example/app:1")

    def attachment(body: bytes, signer: Any, annotations: dict[str, str] | None = None) -> Attachment:
        sig = base64.b64encode(signer.sign(body, ec.ECDSA(hashes.SHA256()))).decode()
        return Attachment(
            SIMPLE_SIGNING,
            body,
            {SIGNATURE_ANNOTATION: sig} if annotations is None else annotations,
            "sha256:" + "0" * 64,
        )

    good = attachment(signed_payload(), key)
    assert verify_requirement(req, ref, MANIFEST, [good]) == ""
    assert "has none" in verify_requirement(req, ref, MANIFEST, [])
    assert "1 other attachments" in verify_requirement(
        req, ref, MANIFEST, [Attachment("application/x-att", b"", {}, "d")]
    )
    assert "does not verify" in verify_requirement(
        req, ref, MANIFEST, [attachment(signed_payload(), stranger)]
    )
    assert "no dev.cosignproject.cosign/signature annotation" in verify_requirement(
        req, ref, MANIFEST, [attachment(signed_payload(), key, {})]
    )
    wrong_digest = attachment(signed_payload(digest="sha256:" + "1" * 64), key)
    assert "is for manifest sha256:111" in verify_requirement(req, ref, MANIFEST, [wrong_digest])
    wrong_name = attachment(signed_payload(identity="reg.example/app:2"), key)
    assert "which matchRepoDigestOrExact does not accept" in verify_requirement(
        req, ref, MANIFEST, [wrong_name]
    )
    both = verify_requirement(req, ref, MANIFEST, [wrong_name, wrong_digest])
    assert both.startswith("none of the signatures is accepted:")
    assert verify_requirement(req, ref, MANIFEST, [wrong_name, good]) == ""
