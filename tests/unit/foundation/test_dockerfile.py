"""The Dockerfile cannot be built here (no Docker engine): check what it copies and installs."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
DOCKERFILE = (REPO / "Dockerfile").read_text()


def instructions() -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_base_is_debian_bookworm() -> None:
    assert instructions()[0] == ("FROM", "debian:bookworm")


def test_every_copied_file_exists() -> None:
    copies = [rest.split()[:-1] for keyword, rest in instructions() if keyword == "COPY"]
    assert copies
    for sources in copies:
        for source in sources:
            assert (REPO / source).exists(), f"Dockerfile copies {source}, which is not in the repo"


def test_entrypoint_runs_the_daemon_with_the_socket_in_a_volume() -> None:
    by_keyword = {keyword: rest for keyword, rest in instructions()}
    assert '"serve"' in by_keyword["ENTRYPOINT"]
    assert "/run/cri-py" in by_keyword["VOLUME"]


def apt_packages() -> list[str]:
    packages: list[str] = []
    for keyword, rest in instructions():
        if keyword == "RUN" and "apt-get install" in rest:
            words = rest.split("apt-get install", 1)[1].split("&&")[0].split()
            packages += [w for w in words if not w.startswith("-")]
    return packages


def test_carries_the_runtime_pieces() -> None:
    assert {"runc", "crun", "conmon", "catatonit", "containernetworking-plugins"} <= set(apt_packages())


@pytest.mark.skipif(shutil.which("apt-cache") is None, reason="apt-cache is Debian's; not on this machine")
def test_every_apt_package_is_installable() -> None:
    for package in apt_packages():
        policy = subprocess.run(["apt-cache", "policy", package], capture_output=True, text=True, check=True)
        candidate = re.search(r"Candidate:\s*(\S+)", policy.stdout)
        assert candidate and candidate.group(1) != "(none)", (
            f"{package} is not installable: {policy.stdout!r}"
        )
