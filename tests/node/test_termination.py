"""How containers end, as kubelet reports it from cri-py's ContainerStatus: restart policies with
zero and non-zero exits, the OOM killer, termination messages."""

from __future__ import annotations

from typing import Any

import pytest

from tests.node.cluster_env import NodeEnv, container_status


def one_shot(name: str, policy: str, command: str, **container: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": policy,
            "containers": [{"name": "app", "command": ["sh", "-c", command], **container}],
        },
    }


@pytest.mark.parametrize(
    ("policy", "code", "phase"),
    [("Never", 0, "Succeeded"), ("Never", 3, "Failed"), ("OnFailure", 0, "Succeeded")],
)
def test_policy_that_ends_the_pod(node: NodeEnv, ns: str, policy: str, code: int, phase: str) -> None:
    name = f"{policy.lower()}-{code}"
    node.create_pod(ns, one_shot(name, policy, f"echo bye; exit {code}"))
    pod = node.wait_phase(ns, name, phase, 60)
    status = container_status(pod, "app")
    assert status.restart_count == 0
    assert status.state.terminated.exit_code == code
    assert status.state.terminated.reason == ("Completed" if code == 0 else "Error")
    assert node.logs(ns, name, "app") == "bye\n"


@pytest.mark.parametrize(("policy", "code"), [("OnFailure", 3), ("Always", 0), ("Always", 3)])
def test_policy_that_restarts(node: NodeEnv, ns: str, policy: str, code: int) -> None:
    name = f"{policy.lower()}-{code}"
    node.create_pod(ns, one_shot(name, policy, f"sleep 1; exit {code}"))
    pod = node.wait_pod(ns, name, lambda p: container_status(p, "app").restart_count >= 1, 90, "a restart")
    assert pod.status.phase == "Running"
    last = container_status(pod, "app").last_state.terminated
    assert last.exit_code == code and last.reason == ("Completed" if code == 0 else "Error")
    assert last.finished_at >= last.started_at


def test_memory_limit_oom_killed(node: NodeEnv, ns: str) -> None:
    # dd's 256 MiB buffer is touched by the read from /dev/zero: far over the 32 MiB limit
    node.create_pod(ns, one_shot(
        "oom", "Never", "dd if=/dev/zero of=/dev/null bs=256M count=1",
        resources={"limits": {"memory": "32Mi"}},
    ))  # fmt: skip
    pod = node.wait_phase(ns, "oom", "Failed", 60)
    terminated = container_status(pod, "app").state.terminated
    assert terminated.reason == "OOMKilled" and terminated.exit_code == 137, terminated


def test_termination_message_file(node: NodeEnv, ns: str) -> None:
    node.create_pod(ns, one_shot("msg-file", "Never", "printf 'gone fishing' > /dev/termination-log; exit 2"))
    node.create_pod(ns, one_shot(
        "msg-custom", "Never", "printf 'custom path' > /tmp/why; exit 0", terminationMessagePath="/tmp/why",
    ))  # fmt: skip
    terminated = container_status(node.wait_phase(ns, "msg-file", "Failed"), "app").state.terminated
    assert terminated.message == "gone fishing" and terminated.exit_code == 2
    terminated = container_status(node.wait_phase(ns, "msg-custom", "Succeeded"), "app").state.terminated
    assert terminated.message == "custom path"


def test_termination_message_fallback_to_logs(node: NodeEnv, ns: str) -> None:
    node.create_pod(ns, one_shot(
        "msg-logs", "Never", "echo first words; echo last words; exit 4",
        terminationMessagePolicy="FallbackToLogsOnError",
    ))  # fmt: skip
    node.create_pod(ns, one_shot(
        "msg-logs-ok", "Never", "echo all good; exit 0", terminationMessagePolicy="FallbackToLogsOnError",
    ))  # fmt: skip
    terminated = container_status(node.wait_phase(ns, "msg-logs", "Failed"), "app").state.terminated
    assert terminated.message == "first words\nlast words\n"
    # only an error falls back to the log
    terminated = container_status(node.wait_phase(ns, "msg-logs-ok", "Succeeded"), "app").state.terminated
    assert not terminated.message
