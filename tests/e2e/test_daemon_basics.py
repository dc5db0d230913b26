"""The foundation as an operator sees it: version, info, errors, config failures, signals."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

import cri_py
from cri_py.api import api_pb2
from tests.e2e.daemon import CRI_PY, REPO, Daemon, running_daemon


def test_version_names_cri_py(cri: Daemon) -> None:
    version = cri.runtime.Version(api_pb2.VersionRequest())
    assert version.runtime_name == "cri-py"
    assert version.runtime_version == cri_py.__version__
    assert version.runtime_api_version == "v1"
    assert version.version == "0.1.0"


def test_status_reports_both_conditions_and_config(cri: Daemon) -> None:
    status = cri.runtime.Status(api_pb2.StatusRequest(verbose=True))
    conditions = {c.type: c for c in status.status.conditions}
    assert conditions["RuntimeReady"].status is True
    assert conditions["NetworkReady"].status is True, conditions["NetworkReady"].message
    effective = json.loads(status.info["config"])
    assert effective["root"] == str(cri.root)
    handler_names = {h.name for h in status.runtime_handlers}
    assert {"", "runc"} <= handler_names


def test_status_is_not_verbose_by_default(cri: Daemon) -> None:
    assert dict(cri.runtime.Status(api_pb2.StatusRequest()).info) == {}


def test_network_not_ready_without_cni_config(cri_factory: Any, tmp_path: Path) -> None:
    empty = tmp_path / "net.d"
    empty.mkdir()
    daemon = cri_factory({"cni": {"conf_dir": str(empty)}})
    conditions = {c.type: c for c in daemon.runtime.Status(api_pb2.StatusRequest()).status.conditions}
    network = conditions["NetworkReady"]
    assert network.status is False
    assert network.reason == "NetworkPluginNotReady"
    assert str(empty) in network.message


def test_runtime_config_reports_cgroup_driver(cri: Daemon) -> None:
    reply = cri.runtime.RuntimeConfig(api_pb2.RuntimeConfigRequest())
    assert reply.linux.cgroup_driver == api_pb2.CgroupDriver.CGROUPFS


def test_image_fs_info_measures_real_directories(cri: Daemon) -> None:
    reply = cri.image.ImageFsInfo(api_pb2.ImageFsInfoRequest())
    assert reply.image_filesystems, "crictl refuses a runtime without image filesystems"
    for usage in [*reply.image_filesystems, *reply.container_filesystems]:
        assert usage.timestamp > 0
        assert Path(usage.fs_id.mountpoint).is_relative_to(cri.root)
        assert usage.inodes_used.value >= 1
    before = reply.image_filesystems[0]
    blob = Path(before.fs_id.mountpoint) / "probe.bin"
    blob.write_bytes(os.urandom(256 * 1024))
    try:
        after = cri.image.ImageFsInfo(api_pb2.ImageFsInfoRequest()).image_filesystems[0]
        assert after.used_bytes.value >= before.used_bytes.value + 256 * 1024
        assert after.inodes_used.value == before.inodes_used.value + 1
    finally:
        blob.unlink()


def test_socket_is_group_accessible_only(cri: Daemon) -> None:
    assert cri.socket.stat().st_mode & 0o777 == 0o660


def test_unimplemented_rpc_names_itself(cri: Daemon) -> None:
    request = api_pb2.CheckpointContainerRequest(container_id="x")
    with pytest.raises(grpc.RpcError) as info:
        cri.runtime.CheckpointContainer(request)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "CheckpointContainer" in (info.value.details() or "")
    # and the daemon keeps serving
    assert cri.runtime.Version(api_pb2.VersionRequest()).runtime_name == "cri-py"


def test_large_messages_are_accepted(cri: Daemon) -> None:
    # 20 MiB of labels: beyond gRPC's 4 MiB default, inside our limit; the filter matches nothing.
    big = api_pb2.ListContainersRequest(
        filter=api_pb2.ContainerFilter(label_selector={"k": "v" * (20 * 1024 * 1024)})
    )
    try:
        reply = cri.runtime.ListContainers(big, timeout=30)
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.UNIMPLEMENTED, exc.details()
    else:
        assert list(reply.containers) == []


def test_second_daemon_on_the_same_root_changes_nothing(cri: Daemon) -> None:
    """It is refused before recovery could clean up (or unwind) anything of the first's."""
    leftover = cri.root / "images" / "ingest" / "a-pull-in-progress"
    leftover.write_bytes(b"partial layer")
    result = subprocess.run(
        [*CRI_PY, "serve", "--config", str(cri.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert result.returncode != 0
    assert f"is using the root {cri.root}" in result.stderr
    assert leftover.read_bytes() == b"partial layer"
    leftover.unlink()
    assert cri.runtime.Version(api_pb2.VersionRequest()).runtime_name == "cri-py"


def test_second_daemon_on_live_socket_is_refused(cri: Daemon, tmp_path: Path) -> None:
    config = dict(cri.config, root=str(tmp_path / "root"), run_dir=str(tmp_path / "run"))
    config_path = tmp_path / "other.yaml"
    config_path.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [*CRI_PY, "serve", "--config", str(config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert result.returncode != 0
    assert "another daemon is serving" in result.stderr
    assert cri.runtime.Version(api_pb2.VersionRequest()).runtime_name == "cri-py"


def test_stale_socket_is_replaced(tmp_path: Path) -> None:
    with running_daemon(base=tmp_path) as daemon:
        daemon.stop(signal.SIGKILL)
        # a SIGKILLed daemon leaves its socket file behind; nothing answers on it
        stale = socket.socket(socket.AF_UNIX)
        if not daemon.socket.exists():
            stale.bind(str(daemon.socket))
        stale.close()
        daemon.start()
        assert daemon.runtime.Version(api_pb2.VersionRequest()).runtime_name == "cri-py"


def test_sigterm_exits_cleanly(tmp_path: Path) -> None:
    with running_daemon(base=tmp_path) as daemon:
        assert daemon.stop(signal.SIGTERM) == 0
        assert "stopping" in daemon.log_text()
        daemon.start()


def test_every_rpc_is_logged_with_duration_and_code(cri: Daemon) -> None:
    cri.runtime.Version(api_pb2.VersionRequest())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [line for line in cri.log_text().splitlines() if "rpc=RuntimeService/Version" in line]
        if lines:
            break
        time.sleep(0.05)
    assert lines and "code=OK" in lines[-1] and "duration_ms=" in lines[-1]


def test_sighup_reloads_log_level_and_registries(cri: Daemon) -> None:
    config = dict(cri.config)
    config["log_level"] = "info"
    config["registries"] = {"127.0.0.1:5999": {"insecure": True}}
    cri.config_path.write_text(yaml.safe_dump(config))
    assert cri.proc is not None
    cri.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "config reloaded" not in cri.log_text():
        assert time.monotonic() < deadline, cri.log_text()[-2000:]
        time.sleep(0.05)
    line = next(line for line in cri.log_text().splitlines() if "config reloaded" in line)
    assert "log_level=debug->info" in line
    assert "127.0.0.1:5999" in line
    status = cri.runtime.Status(api_pb2.StatusRequest(verbose=True))
    assert json.loads(status.info["config"])["registries"] == {
        "127.0.0.1:5999": {"insecure": True, "mirror_only": False}
    }


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("listen: unix:///tmp/x.sock\nbogus_key: 1\n", "bogus_key: unknown key"),
        ("log_level: 3\n", "log_level: expected a string"),
        ("conmon: /nonexistent/conmon\n", "conmon: /nonexistent/conmon is not an executable file"),
        ("runtimes:\n  runc:\n    path: /nonexistent/runc\n", "runtimes.runc.path: /nonexistent/runc is not"),
        ("cni:\n  conf_dirr: /x\n", "cni.conf_dirr: unknown key"),
        (
            "registries:\n  example.test:\n    insecure: 'yes'\n",
            "registries.example.test.insecure: expected a boolean",
        ),
    ],
)
def test_broken_config_fails_with_one_line_and_status_2(tmp_path: Path, content: str, expected: str) -> None:
    config = tmp_path / "cri-py.yaml"
    config.write_text(content)
    for command in ("serve", "config"):
        result = subprocess.run(
            [*CRI_PY, command, "--config", str(config)], capture_output=True, text=True, timeout=60, cwd=REPO
        )
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert str(config) in lines[0] and expected in lines[0]


def test_dropins_merge_in_lexical_order_and_flags_win(tmp_path: Path) -> None:
    config = tmp_path / "cri-py.yaml"
    config.write_text("log_level: info\nroot: /var/lib/a\n")
    dropins = tmp_path / "cri-py.d"
    dropins.mkdir()
    (dropins / "20-b.yaml").write_text("root: /var/lib/b\nstreaming:\n  port: 1234\n")
    (dropins / "10-a.yaml").write_text("root: /var/lib/ignored\nstreaming:\n  address: 127.0.0.2\n")
    result = subprocess.run(
        [*CRI_PY, "config", "--json", "--config", str(config), "--log-level", "debug"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    effective = json.loads(result.stdout)
    assert effective["root"] == "/var/lib/b"
    assert effective["streaming"] == {"address": "127.0.0.2", "port": 1234}
    assert effective["log_level"] == "debug"


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "cri-py"
    assert script.exists()
    result = subprocess.run([str(script), "config", "--json"], capture_output=True, text=True, timeout=60)
    # the host may have no /etc/cri-py; built-in defaults still make a valid config
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["listen"] == "unix:///run/cri-py/cri-py.sock"
