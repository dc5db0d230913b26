"""kubelet's probes against cri-py's containers: exec probes run through ExecSync, httpGet and
tcpSocket probes reach the pod's address on the node's bridge."""

from __future__ import annotations

import time
from typing import Any

from tests.node.cluster_env import NodeEnv, container_status, ready


def probe_pod(name: str, command: str, liveness: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "app",
                "command": ["sh", "-c", command],
                "livenessProbe": {**liveness, "periodSeconds": 1, "failureThreshold": 2},
            }],
        },
    }  # fmt: skip


def assert_restarted_by_liveness(node: NodeEnv, ns: str, name: str) -> None:
    pod = node.wait_pod(ns, name, lambda p: container_status(p, "app").restart_count >= 1, 60,
                        "a liveness restart")  # fmt: skip
    last = container_status(pod, "app").last_state.terminated
    # the probe's kill: SIGTERM, ignored by sh as PID 1, then SIGKILL after the grace period
    assert last.exit_code == 137 and last.reason == "Error", last
    events = node.core.list_namespaced_event(ns, field_selector=f"involvedObject.name={name}").items
    assert any(e.reason == "Unhealthy" and "Liveness probe failed" in e.message for e in events)
    assert any(e.reason == "Killing" and "failed liveness probe" in e.message for e in events)


def test_exec_liveness_restarts(node: NodeEnv, ns: str) -> None:
    node.create_pod(ns, probe_pod(
        "exec-live", "touch /tmp/healthy; sleep 4; rm /tmp/healthy; sleep 600",
        {"exec": {"command": ["cat", "/tmp/healthy"]}},
    ))  # fmt: skip
    node.wait_running(ns, "exec-live")
    assert_restarted_by_liveness(node, ns, "exec-live")


def test_http_liveness_restarts(node: NodeEnv, ns: str) -> None:
    node.create_pod(ns, probe_pod(
        "http-live",
        "mkdir /www; echo ok > /www/healthz; httpd -p 8080 -h /www; sleep 4; rm /www/healthz; sleep 600",
        {"httpGet": {"path": "/healthz", "port": 8080}},
    ))  # fmt: skip
    node.wait_running(ns, "http-live")
    assert_restarted_by_liveness(node, ns, "http-live")


def test_tcp_liveness_restarts(node: NodeEnv, ns: str) -> None:
    node.create_pod(ns, probe_pod(
        "tcp-live",
        "mkdir /www; httpd -f -p 9000 -h /www & server=$!; sleep 4; kill $server; sleep 600",
        {"tcpSocket": {"port": 9000}},
    ))  # fmt: skip
    node.wait_running(ns, "tcp-live")
    assert_restarted_by_liveness(node, ns, "tcp-live")


def test_readiness_flips_ready_and_back(node: NodeEnv, ns: str) -> None:
    node.create_pod(ns, {
        "metadata": {"name": "ready-flip"},
        "spec": {"containers": [{
            "name": "app", "command": ["sh", "-c", "touch /tmp/ready; sleep 600"],
            "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 1,
                               "failureThreshold": 1, "successThreshold": 1},
        }]},
    })  # fmt: skip
    node.wait_running(ns, "ready-flip")
    node.kubectl("exec", "-n", ns, "ready-flip", "--", "rm", "/tmp/ready")
    node.wait_pod(ns, "ready-flip", lambda p: not ready(p), 30, "Ready=False")
    node.kubectl("exec", "-n", ns, "ready-flip", "--", "touch", "/tmp/ready")
    pod = node.wait_pod(ns, "ready-flip", ready, 30, "Ready=True again")
    # a readiness failure never restarts anything
    assert container_status(pod, "app").restart_count == 0


def test_startup_probe_gates_liveness(node: NodeEnv, ns: str) -> None:
    node.create_pod(ns, {
        "metadata": {"name": "startup"},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
            "name": "app", "command": ["sh", "-c", "sleep 600"],
            "startupProbe": {"exec": {"command": ["cat", "/tmp/started"]}, "periodSeconds": 1,
                             "failureThreshold": 60},
            # would fail at once (no /tmp/alive): kubelet must not run it before startup succeeded
            "livenessProbe": {"exec": {"command": ["cat", "/tmp/alive"]}, "periodSeconds": 1, "failureThreshold": 1},
            "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1},
        }]},
    })  # fmt: skip
    node.wait_pod(ns, "startup", lambda p: p.status.phase == "Running", 60, "Running")
    time.sleep(6)
    pod = node.pod(ns, "startup")
    status = container_status(pod, "app")
    assert status.restart_count == 0 and status.started is False and not ready(pod)
    node.kubectl("exec", "-n", ns, "startup", "--", "touch", "/tmp/started")
    # started, then the liveness probe runs, fails, and the container is restarted
    node.wait_pod(
        ns, "startup", lambda p: container_status(p, "app").restart_count >= 1, 60, "liveness restart"
    )
