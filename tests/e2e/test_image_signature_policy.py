"""containers-policy.json(5) against a real daemon and registry, with images signed in the test:
a key generated here, simple-signing payloads, the sigstore attachment pushed next to the image."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from cri_py.api import api_pb2
from tests.e2e.daemon import CRI_PY, REPO, Daemon
from tests.e2e.recording_server import RecordingRegistry
from tests.e2e.registry_fixtures import TestRegistry, running_registry
from tests.e2e.signing import SigningKey, payload, push_image, push_signatures, sign_image


def pull(cri: Daemon, ref: str) -> str:
    req = api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=ref))
    return str(cri.image.PullImage(req, timeout=120).image_ref)


def refused(cri: Daemon, ref: str) -> str:
    """The message of a refused pull; the image must not have been stored."""
    with pytest.raises(grpc.RpcError) as info:
        pull(cri, ref)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION, info.value.details()
    req = api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=ref))
    assert not cri.image.ImageStatus(req, timeout=10).image.id
    return str(info.value.details())


@pytest.fixture(scope="module")
def reg() -> Iterator[TestRegistry]:
    with running_registry("") as empty:
        yield empty


def write_policy(path: Path, policy: dict[str, Any]) -> Path:
    path.write_text(json.dumps(policy))
    return path


def test_a_policy_that_rejects_all_but_signed_images(
    cri_factory: Any, tmp_path: Path, reg: TestRegistry
) -> None:
    key, stranger = SigningKey.generate(), SigningKey.generate()
    public = key.write_public(tmp_path / "key.pub")
    host = reg.host
    digests = {
        name: push_image(host, f"signed/{name}", "1", name)
        for name in ("app", "nosig", "wrongkey", "otherid", "swapped", "several")
    }
    push_image(host, "other/app", "1", "other")
    sign_image(host, "signed/app", digests["app"], key, f"{host}/signed/app:1")
    sign_image(host, "signed/wrongkey", digests["wrongkey"], stranger, f"{host}/signed/wrongkey:1")
    sign_image(host, "signed/otherid", digests["otherid"], key, f"{host}/signed/otherid:2")
    # a valid signature of another image, copied over: signed by the right key, for the wrong digest
    app_payload = payload(digests["app"], f"{host}/signed/swapped:1")
    push_signatures(host, "signed/swapped", digests["swapped"], [(app_payload, key.sign(app_payload))])
    good = payload(digests["several"], f"{host}/signed/several:1")
    push_signatures(
        host, "signed/several", digests["several"], [(good, stranger.sign(good)), (good, key.sign(good))]
    )

    policy = write_policy(
        tmp_path / "policy.json",
        {
            "default": [{"type": "reject"}],
            "transports": {
                "docker": {
                    f"{host}/signed": [{"type": "sigstoreSigned", "keyPath": str(public)}],
                    f"{host}/signed/special": [{"type": "insecureAcceptAnything"}],
                }
            },
        },
    )
    with RecordingRegistry() as elsewhere:
        cri = cri_factory({**reg.daemon_overrides(mirror_upstreams=False), "signature_policy": str(policy)})
        assert pull(cri, f"{host}/signed/app:1")
        assert pull(cri, f"{host}/signed/app@{digests['app']}")  # a digest needs the repository only
        assert pull(cri, f"{host}/signed/several:1")  # one good signature among others is enough

        message = refused(cri, f"{host}/other/app:1")
        assert f"signature policy {policy}: default[0] is reject" in message
        refused(cri, f"{elsewhere.host}/any:1")
        assert elsewhere.connections == 0  # rejected by name: nothing contacted

        scope = f'transports.docker["{host}/signed"][0] (sigstoreSigned)'
        assert f"{scope}: a signature is required, but the registry has none" in refused(
            cri, f"{host}/signed/nosig:1"
        )
        assert f"does not verify with the public key(s) of {public}" in refused(
            cri, f"{host}/signed/wrongkey:1"
        )
        assert f"is for '{host}/signed/otherid:2', which matchRepoDigestOrExact does not accept" in refused(
            cri, f"{host}/signed/otherid:1"
        )
        assert f"is for manifest {digests['app']}, not for this image's" in refused(
            cri, f"{host}/signed/swapped:1"
        )

        # the most specific scope decides: an exact repository beats its namespace
        push_image(host, "signed/special", "1", "special")
        assert pull(cri, f"{host}/signed/special:1")

        # the file is re-read when it changes; a broken one refuses everything, naming itself
        policy.write_text('{"default": [{"type": "insecureAcceptAnything"}], "default": []}')
        assert f"signature policy unusable, no image is accepted: {policy}" in refused(
            cri, f"{host}/other/app:1"
        )
        write_policy(policy, {"default": [{"type": "insecureAcceptAnything"}]})
        assert pull(cri, f"{host}/other/app:1")


def test_policy_names_the_logical_image_not_the_mirror(
    cri_factory: Any, tmp_path: Path, reg: TestRegistry
) -> None:
    key = SigningKey.generate()
    public = key.write_public(tmp_path / "key.pub")
    digest = push_image(reg.host, "mirrored/app", "1", "mirrored")
    push_image(reg.host, "mirrored/physical", "1", "physical")
    sign_image(reg.host, "mirrored/app", digest, key, "docker.io/mirrored/app:1")
    physical = push_image(reg.host, "mirrored/physical", "1", "physical")
    sign_image(reg.host, "mirrored/physical", physical, key, f"{reg.host}/mirrored/physical:1")
    conf = tmp_path / "registries.conf"
    conf.write_text(f'[[registry]]\nprefix = "docker.io/mirrored"\nlocation = "{reg.host}/mirrored"\n')
    policy = write_policy(
        tmp_path / "policy.json",
        {
            "default": [{"type": "reject"}],
            "transports": {
                "docker": {"docker.io/mirrored": [{"type": "sigstoreSigned", "keyData": _b64(public)}]}
            },
        },
    )
    cri = cri_factory({"registries_conf": str(conf), "signature_policy": str(policy)})
    assert pull(cri, "docker.io/mirrored/app:1")
    # signed for where it is stored, not for the name that was asked for: not accepted
    assert "which matchRepoDigestOrExact does not accept for docker.io/mirrored/physical:1" in refused(
        cri, "docker.io/mirrored/physical:1"
    )


def test_broken_policy_stops_start_and_config_shows_the_scopes(tmp_path: Path) -> None:
    public = SigningKey.generate().write_public(tmp_path / "key.pub")
    policy = write_policy(
        tmp_path / "policy.json",
        {
            "default": [{"type": "reject"}],
            "transports": {
                "docker": {"reg.example/app": [{"type": "sigstoreSigned", "keyPath": str(public)}]}
            },
        },
    )
    config = tmp_path / "cri-py.yaml"
    config.write_text(
        f"signature_policy: {policy}\nregistries_conf: ''\nroot: {tmp_path}/root\nrun_dir: {tmp_path}/run\n"
        f"listen: unix://{tmp_path}/cri.sock\n"
    )
    shown = subprocess.run(
        [*CRI_PY, "config", "--json", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["effective_signature_policy"] == {
        "default": ["reject"],
        "transports": {"docker": {"reg.example/app": ["sigstoreSigned"]}},
    }
    write_policy(policy, {"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/k.gpg"}]})
    for command in ("config", "serve"):
        result = subprocess.run(
            [*CRI_PY, command, "--config", str(config)], capture_output=True, text=True, timeout=60, cwd=REPO
        )
        assert result.returncode == 2
        assert f"{policy}: default[0]: signedBy (GPG simple signing) is not supported" in result.stderr


def _b64(path: Path) -> str:
    import base64

    return base64.b64encode(path.read_bytes()).decode()
