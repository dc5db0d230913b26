"""Config loading: defaults, drop-ins, overrides, strict validation with file and key in the message."""

from __future__ import annotations

from pathlib import Path

import pytest

from cri_py.config import ConfigError, load_config


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_ship_runc_crun_runsc(tmp_path: Path) -> None:
    config = load_config(write(tmp_path / "c.yaml", ""))
    assert config.default_runtime == "runc"
    assert {"runc", "crun", "runsc", "kata"} <= set(config.runtimes)
    assert config.runtimes["runsc"].type == "gvisor"
    assert config.runtimes["runsc"].sandbox_pids
    assert config.socket_path == Path("/run/cri-py/cri-py.sock")
    assert config.cni.cache_dir == Path("/var/lib/cri-py/cni")


def test_cache_dir_follows_root(tmp_path: Path) -> None:
    config = load_config(write(tmp_path / "c.yaml", "root: /srv/cri\n"))
    assert config.cni.cache_dir == Path("/srv/cri/cni")


def test_dropins_then_overrides(tmp_path: Path) -> None:
    main = write(tmp_path / "c.yaml", "log_level: warning\nregistries:\n  a.test: {insecure: true}\n")
    write(tmp_path / "c.d" / "01.yaml", "registries:\n  b.test: {mirrors: ['http://127.0.0.1:1']}\n")
    write(tmp_path / "c.d" / "02.yaml", "log_level: error\n")
    write(tmp_path / "c.d" / "ignored.txt", "log_level: nonsense\n")
    config = load_config(main, {"log_level": "debug"})
    assert config.log_level == "debug"
    assert config.registries["a.test"].insecure is True
    assert config.registries["b.test"].mirrors == ("http://127.0.0.1:1",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nope: 1\n", "nope: unknown key"),
        ("streaming:\n  port: 70000\n", "streaming.port: must be 0..65535"),
        ("streaming:\n  port: '80'\n", "streaming.port: expected a integer"),
        ("cgroup_driver: lxc\n", "cgroup_driver: must be cgroupfs or systemd"),
        ("default_runtime: nothere\n", "default_runtime: no runtime named 'nothere'"),
        ("listen: tcp://0.0.0.0:1\n", "listen: must be unix:///ABSOLUTE/PATH"),
        ("runtimes:\n  x:\n    root: /r\n", "runtimes.x.path: missing"),
        ("runtimes:\n  x:\n    path: /bin/sh\n    colour: red\n", "runtimes.x.colour: unknown key"),
        ("- a\n- b\n", "(top level): expected a mapping"),
        ("a: [\n", "invalid YAML"),
        ("storage_driver: btrfs\n", "storage_driver: must be overlay or vfs"),
    ],
)
def test_invalid_config_names_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "c.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_error_in_dropin_names_the_dropin(tmp_path: Path) -> None:
    main = write(tmp_path / "c.yaml", "")
    dropin = write(tmp_path / "c.d" / "50-bad.yaml", "cni:\n  bin_dirs: /usr/lib/cni\n")
    with pytest.raises(ConfigError) as info:
        load_config(main)
    assert str(dropin) in str(info.value) and "cni.bin_dirs: expected a list of paths" in str(info.value)


def test_optional_runtime_may_be_missing(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path / "c.yaml", "runtimes:\n  kata: {path: /nope/kata, type: vm, optional: true}\n")
    )
    assert config.runtimes["kata"].path == Path("/nope/kata")


def test_missing_named_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.yaml")
    assert "cannot read" in str(info.value)


def test_shipped_default_config_is_valid() -> None:
    shipped = Path(__file__).resolve().parents[3] / "conf" / "cri-py.yaml"
    config = load_config(shipped)
    assert config.listen == "unix:///run/cri-py/cri-py.sock"
    assert config.cni.conf_dir == Path("/etc/cni/net.d")


def test_metrics_are_off_by_default_and_on_loopback_when_enabled(tmp_path: Path) -> None:
    off = load_config(write(tmp_path / "a.yaml", ""))
    assert not off.metrics.enabled
    on = load_config(write(tmp_path / "b.yaml", "metrics:\n  enabled: true\n"))
    assert on.metrics.enabled and on.metrics.address == "127.0.0.1" and on.metrics.port == 9090
    with pytest.raises(ConfigError, match="metrics.port"):
        load_config(write(tmp_path / "c.yaml", "metrics:\n  port: 70000\n"))
    with pytest.raises(ConfigError, match="metrics.enabled"):
        load_config(write(tmp_path / "d.yaml", "metrics:\n  enabled: 'yes'\n"))


def test_inspect_socket_is_off_unless_a_path_is_given(tmp_path: Path) -> None:
    assert load_config(write(tmp_path / "a.yaml", "")).inspect_socket is None
    assert load_config(write(tmp_path / "b.yaml", "inspect_socket: ''\n")).inspect_socket is None
    on = load_config(write(tmp_path / "c.yaml", "inspect_socket: /var/run/crio/crio.sock\n"))
    assert on.inspect_socket == Path("/var/run/crio/crio.sock")
    with pytest.raises(ConfigError, match="inspect_socket"):
        load_config(write(tmp_path / "d.yaml", "inspect_socket: [a]\n"))
