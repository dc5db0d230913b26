from cri_py.network.result import primary_and_additional, result_addresses, result_interfaces

BRIDGE_RESULT = {
    "cniVersion": "1.0.0",
    "interfaces": [
        {"name": "br0", "mac": "36:ea:00:00:00:01"},
        {"name": "veth1", "mac": "52:ae:00:00:00:02"},
        {"name": "eth0", "mac": "7a:60:00:00:00:03", "sandbox": "/run/netns/x"},
    ],
    "ips": [
        {"interface": 2, "address": "fd00::5/64"},
        {"interface": 2, "address": "10.88.0.2/16", "gateway": "10.88.0.1"},
        {"interface": 0, "address": "10.88.0.1/16"},
    ],
}


def test_addresses_on_the_pod_interface_only() -> None:
    assert result_addresses(BRIDGE_RESULT) == ["fd00::5", "10.88.0.2"]
    assert result_interfaces(BRIDGE_RESULT) == ["br0", "veth1", "eth0"]


def test_ipv4_first() -> None:
    assert primary_and_additional(["fd00::5", "10.88.0.2"]) == ("10.88.0.2", ["fd00::5"])
    assert primary_and_additional([]) == ("", [])


def test_ipam_only_result_counts_every_address() -> None:
    assert result_addresses({"ips": [{"address": "10.1.0.5/24"}, {"address": "10.1.0.5/24"}]}) == ["10.1.0.5"]


def test_legacy_result() -> None:
    legacy = {"cniVersion": "0.2.0", "ip4": {"ip": "10.2.0.3/24"}, "ip6": {"ip": "fd01::3/64"}}
    assert result_addresses(legacy) == ["10.2.0.3", "fd01::3"]


def test_garbage_is_ignored() -> None:
    assert result_addresses({"ips": [{"address": "nonsense"}, "x", {"interface": 1}]}) == []
