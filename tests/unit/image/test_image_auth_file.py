"""Credentials from containers-auth.json(5) / Docker config.json: key forms, the most specific
key, re-reading on change, and errors that never carry a secret."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from cri_py.image.auth_file import AuthFile, AuthFileError, lookup_keys, normalize_key
from cri_py.image.reference import parse


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_keys_normalize_like_containers_image() -> None:
    assert normalize_key("https://index.docker.io/v1/") == "docker.io"
    assert normalize_key("registry-1.docker.io") == "docker.io"
    assert normalize_key("http://reg.example:5000/some/path") == "reg.example:5000"
    assert normalize_key("reg.example/team/app") == "reg.example/team/app"
    assert lookup_keys(parse("my-registry.local/namespace/user/image:latest")) == [
        "my-registry.local/namespace/user/image",
        "my-registry.local/namespace/user",
        "my-registry.local/namespace",
        "my-registry.local",
    ]
    assert lookup_keys(parse("busybox"))[-1] == "docker.io"


def test_most_specific_key_wins(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    path.write_text(
        json.dumps(
            {
                "auths": {
                    "reg.example": {"auth": b64("host-user:host-pw")},
                    "reg.example/team": {"auth": b64("team-user:team-pw")},
                    "reg.example/team/app": {"username": "app-user", "password": "app-pw"},
                    "https://index.docker.io/v1/": {"auth": b64("hub-user:hub:pw:with:colons")},
                    "tokens.example": {"identitytoken": "refresh-me"},
                    "helper.example": {},
                },
                "credHelpers": {"helper.example": "secretservice"},
            }
        )
    )
    auth = AuthFile(path)
    assert auth.credentials(parse("reg.example/team/app:1")).username == "app-user"
    assert auth.credentials(parse("reg.example/team/other")).username == "team-user"
    assert auth.credentials(parse("reg.example/solo")).username == "host-user"
    hub = auth.credentials(parse("busybox"))
    assert (hub.username, hub.password) == ("hub-user", "hub:pw:with:colons")
    assert auth.credentials(parse("tokens.example/x")).identity_token == "refresh-me"
    assert auth.credentials(parse("helper.example/x")).anonymous
    assert auth.credentials(parse("elsewhere.example/x")).anonymous


def test_legacy_dockercfg_and_changes_are_picked_up(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"reg.example": {"auth": b64("old:pw"), "email": "x@y"}}))
    auth = AuthFile(path)
    assert auth.credentials(parse("reg.example/app")).username == "old"
    path.write_text(json.dumps({"auths": {"reg.example": {"auth": b64("new-user:pw")}}}))
    os.utime(path, ns=(1, 1))  # a different mtime even within the same clock tick
    assert auth.credentials(parse("reg.example/app")).username == "new-user"
    path.unlink()
    assert auth.credentials(parse("reg.example/app")).anonymous
    assert AuthFile(None).credentials(parse("reg.example/app")).anonymous


@pytest.mark.parametrize(
    "content",
    [
        "{not json s3cr3t",
        json.dumps({"auths": {"reg.example": {"auth": "s3cr3t-not-base64!"}}}),
        json.dumps({"auths": {"reg.example": {"auth": b64("s3cr3t-without-colon")}}}),
        json.dumps({"auths": {"reg.example": {"password": ["s3cr3t"]}}}),
        json.dumps({"auths": ["s3cr3t"]}),
    ],
)
def test_broken_files_name_the_file_never_the_secret(tmp_path: Path, content: str) -> None:
    path = tmp_path / "auth.json"
    path.write_text(content)
    with pytest.raises(AuthFileError) as info:
        AuthFile(path).credentials(parse("reg.example/app"))
    assert str(path) in str(info.value)
    assert "s3cr3t" not in str(info.value)
