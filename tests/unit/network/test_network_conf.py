import json
from pathlib import Path

import pytest

from cri_py.network.conf import ConfError, parse_conf, plugin_stdin, version_at_least


def conflist(**overrides: object) -> bytes:
    doc: dict[str, object] = {
        "cniVersion": "1.0.0",
        "name": "podnet",
        "plugins": [
            {"type": "bridge", "bridge": "br0", "ipam": {"type": "host-local"}},
            {"type": "portmap", "capabilities": {"portMappings": True, "bandwidth": False}},
        ],
    }
    doc.update(overrides)
    return json.dumps(doc).encode()


def test_conflist_keeps_plugins_in_order() -> None:
    net = parse_conf(Path("10-a.conflist"), conflist())
    assert net.name == "podnet"
    assert net.cni_version == "1.0.0"
    assert net.plugin_types == ("bridge", "portmap")
    assert net.capabilities(1) == {"portMappings"}
    assert net.capabilities(0) == set()


def test_single_plugin_conf_is_wrapped() -> None:
    raw = json.dumps({"cniVersion": "0.4.0", "name": "one", "type": "ptp", "ipMasq": True}).encode()
    net = parse_conf(Path("10-one.conf"), raw)
    assert net.plugin_types == ("ptp",)
    assert net.plugins[0] == {"type": "ptp", "ipMasq": True}
    stdin = json.loads(plugin_stdin(net, 0, prev_result=None, runtime_config=None))
    assert stdin == {"type": "ptp", "ipMasq": True, "cniVersion": "0.4.0", "name": "one"}


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "not a JSON object"),
        (conflist(name=""), "no name"),
        (conflist(plugins=[]), "plugins missing"),
        (conflist(plugins=[{"bridge": "x"}]), "no type"),
        (conflist(plugins=[{"type": "../evil"}]), "invalid plugin type"),
        (conflist(cniVersion="9.9.9"), "not supported"),
        (conflist(cniVersion="one"), "invalid cniVersion"),
    ],
)
def test_invalid_confs_say_why(raw: bytes, why: str) -> None:
    with pytest.raises(ConfError, match=why):
        parse_conf(Path("x.conflist"), raw)


def test_cni_versions_picks_the_highest_we_speak() -> None:
    net = parse_conf(Path("a.conflist"), conflist(cniVersions=["0.4.0", "1.1.0", "7.0.0"]))
    assert net.cni_version == "1.1.0"
    assert net.cni_versions == ("0.4.0", "1.1.0", "7.0.0")


def test_stdin_carries_prev_result_and_only_runtime_config_given() -> None:
    net = parse_conf(Path("a.conflist"), conflist(cniVersion="0.3.1"))
    prev = {"cniVersion": "0.3.1", "ips": [{"version": "4", "address": "10.0.0.2/24"}]}
    doc = json.loads(
        plugin_stdin(net, 1, prev_result=prev, runtime_config={"portMappings": [{"hostPort": 80}]})
    )
    assert doc["cniVersion"] == "0.3.1"
    assert doc["name"] == "podnet"
    assert doc["prevResult"] == prev
    assert doc["runtimeConfig"] == {"portMappings": [{"hostPort": 80}]}
    assert "capabilities" not in doc
    # the stored plugin object itself is not changed
    assert "capabilities" in net.plugins[1]


def test_version_compare() -> None:
    assert version_at_least("1.1.0", "1.0.0")
    assert version_at_least("0.4.0", "0.4.0")
    assert not version_at_least("0.3.1", "0.4.0")


def test_shipped_default_conflist() -> None:
    path = Path(__file__).parents[3] / "conf" / "cni" / "10-cri-py.conflist"
    net = parse_conf(path, path.read_bytes())
    assert net.cni_version == "1.0.0"
    assert net.plugin_types == ("bridge", "portmap", "loopback")
    bridge = net.plugins[0]
    assert bridge["bridge"] == "cni0"
    assert bridge["ipam"]["type"] == "host-local"
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.88.0.0/16"}]]
    assert net.capabilities(1) == {"portMappings"}
