"""The committed CRI bindings match what hack/gen-proto.sh makes from the committed proto, and
type-check callers."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
GENERATED = ("api_pb2.py", "api_pb2.pyi", "api_pb2_grpc.py", "shimv2_pb2.py", "shimv2_pb2.pyi")


def test_bindings_do_not_drift_from_proto(tmp_path: Path) -> None:
    subprocess.run(
        [str(REPO / "hack" / "gen-proto.sh"), str(tmp_path)],
        check=True,
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
    )
    for name in GENERATED:
        fresh = (tmp_path / name).read_bytes()
        committed = (REPO / "cri_py" / "api" / name).read_bytes()
        assert fresh == committed, f"cri_py/api/{name} drifted from its proto (api/): run hack/gen-proto.sh"


def test_proto_is_the_published_cri_api() -> None:
    proto = (REPO / "api" / "cri" / "runtime" / "v1" / "api.proto").read_bytes()
    assert b"package runtime.v1;" in proto
    shared = REPO.parent / "shared" / "cri-api" / "runtime" / "v1" / "api.proto"
    if shared.exists():
        assert hashlib.sha256(proto).digest() == hashlib.sha256(shared.read_bytes()).digest()


def test_every_rpc_of_both_services_is_in_the_bindings() -> None:
    from cri_py.api import api_pb2

    runtime = api_pb2.DESCRIPTOR.services_by_name["RuntimeService"]
    image = api_pb2.DESCRIPTOR.services_by_name["ImageService"]
    proto = (REPO / "api" / "cri" / "runtime" / "v1" / "api.proto").read_text()
    declared = proto.count("\n    rpc ")
    assert len(runtime.methods) + len(image.methods) == declared


def test_a_misspelt_request_field_fails_the_type_check(tmp_path: Path) -> None:
    """The messages are typed for mypy (api_pb2.pyi and types-protobuf), not Any."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from cri_py.api import api_pb2\n\n\n"
        "def handler(request: api_pb2.StopContainerRequest) -> int:\n"
        "    return request.timeoutt\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", str(probe)],
        capture_output=True, text=True, cwd=REPO, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout
    assert '"StopContainerRequest" has no attribute "timeoutt"' in done.stdout
