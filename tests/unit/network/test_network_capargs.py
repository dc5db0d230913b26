import pytest

from cri_py.api import api_pb2
from cri_py.network.capargs import (
    UNLIMITED_BURST,
    CapabilityError,
    bandwidth_arg,
    dns_arg,
    parse_quantity,
    port_mappings_arg,
    runtime_config_for,
)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("10M", 10_000_000),
        ("1Mi", 1 << 20),
        ("100k", 100_000),
        ("1e3", 1000),
        ("2.5G", 2_500_000_000),
        ("7", 7),
    ],
)
def test_quantities(text: str, value: int) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "M", "10X", "-1M", "1..2"])
def test_bad_quantities(text: str) -> None:
    with pytest.raises(CapabilityError):
        parse_quantity(text)


def test_port_mappings_from_cri() -> None:
    mappings = [
        api_pb2.PortMapping(protocol=api_pb2.UDP, container_port=53, host_port=5353, host_ip="127.0.0.1"),
        api_pb2.PortMapping(protocol=api_pb2.TCP, container_port=80, host_port=0),
        api_pb2.PortMapping(protocol=api_pb2.SCTP, container_port=9, host_port=9),
    ]
    assert port_mappings_arg(mappings) == [
        {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"},
        {"hostPort": 9, "containerPort": 9, "protocol": "sctp", "hostIP": ""},
    ]


def test_port_mapping_without_container_port_is_refused() -> None:
    with pytest.raises(CapabilityError):
        port_mappings_arg([api_pb2.PortMapping(host_port=80)])


def test_bandwidth_from_annotations() -> None:
    assert bandwidth_arg({}) is None
    assert bandwidth_arg({"kubernetes.io/ingress-bandwidth": "1M", "other": "x"}) == {
        "ingressRate": 1_000_000,
        "ingressBurst": UNLIMITED_BURST,
    }
    both = bandwidth_arg({"kubernetes.io/ingress-bandwidth": "1M", "kubernetes.io/egress-bandwidth": "2M"})
    assert both is not None and both["egressRate"] == 2_000_000


def test_dns() -> None:
    assert dns_arg(None) is None
    assert dns_arg(api_pb2.DNSConfig()) is None
    cfg = api_pb2.DNSConfig(servers=["10.0.0.10"], searches=["svc.local"], options=["ndots:5"])
    assert dns_arg(cfg) == {"servers": ["10.0.0.10"], "searches": ["svc.local"], "options": ["ndots:5"]}


def test_runtime_config_only_declared_and_supplied() -> None:
    supplied = {"portMappings": [1], "dns": {"servers": []}}
    assert runtime_config_for({"portMappings", "bandwidth"}, supplied) == {"portMappings": [1]}
    assert runtime_config_for(set(), supplied) == {}
