"""Runtime and kernel feature probing: `<runtime> features` and mount_setattr."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from cri_py.oci import features


def _fake_runtime(tmp_path: Path, output: str, code: int = 0) -> str:
    tmp_path.mkdir(exist_ok=True)
    script = tmp_path / "fake-runtime"
    script.write_text(
        f"#!/bin/sh\n[ \"$2\" = features ] || exit 3\ncat <<'EOF'\n{output}\nEOF\nexit {code}\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def test_mount_options_from_the_features_document(tmp_path: Path) -> None:
    doc = json.dumps({"ociVersionMin": "1.0.0", "mountOptions": ["rbind", "rro", "ro"]})
    binary = _fake_runtime(tmp_path, doc)
    assert features.runtime_mount_options(binary, ["--root=/x"]) == {"rbind", "rro", "ro"}


def test_no_features_command_or_garbage_means_no_options(tmp_path: Path) -> None:
    assert features.runtime_mount_options(_fake_runtime(tmp_path / "a", "usage", 1)) == frozenset()
    assert features.runtime_mount_options(_fake_runtime(tmp_path / "b", "not json")) == frozenset()
    assert features.runtime_mount_options(str(tmp_path / "missing")) == frozenset()


def test_kernel_probe_matches_the_kernel_version() -> None:
    release = os.uname().release.split("-")[0].split(".")
    major, minor = int(release[0]), int(release[1])
    assert features.kernel_has_mount_setattr() == ((major, minor) >= (5, 12))
