"""A pod with an init container and two app containers, driven the way a cluster user does:
kubectl logs (also --previous and -f), exec (with and without a terminal), attach,
port-forward and cp, all through the API server, kubelet and cri-py's streaming server."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.node.cluster_env import NodeEnv, container_status, wait_for
from tests.node.test_node_basics import free_port


def three_container_pod(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "initContainers": [
                {"name": "init", "command": ["sh", "-c", "echo init-ran > /shared/init.txt; echo init log line"],
                 "volumeMounts": [{"name": "shared", "mountPath": "/shared"}]},
            ],
            "containers": [
                {
                    "name": "web",
                    "command": ["sh", "-c",
                                "mkdir -p /www && cp /shared/init.txt /www/index.html && "
                                "echo web-started && exec httpd -f -p 8080 -h /www"],
                    "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
                    "ports": [{"containerPort": 8080}],
                },
                {
                    # traps SIGTERM so `kill 1` from an exec ends it (PID 1 ignores untrapped signals)
                    "name": "worker",
                    "command": ["sh", "-c",
                                'trap "echo worker-term; exit 3" TERM; echo worker-run-$(cat /proc/sys/kernel/random/uuid); '
                                "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.3; done"],
                    "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
                },
                {
                    "name": "reader",
                    "stdin": True,
                    "command": ["sh", "-c", "echo reader-ready; while read line; do echo got:$line; done"],
                },
            ],
            "volumes": [{"name": "shared", "emptyDir": {}}],
        },
    }  # fmt: skip


def read_line(stream: Any, timeout: float = 30) -> bytes:
    """One line from a child's pipe, or fail after `timeout` (never hang the session)."""
    fd = stream.fileno()
    line = b""
    deadline = time.monotonic() + timeout
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError(f"no line within {timeout:.0f} s (got {line!r})")
        chunk = os.read(fd, 1)
        if not chunk:
            raise AssertionError(f"stream ended (got {line!r})")
        line += chunk
    return line


@pytest.fixture
def pod(node: NodeEnv, ns: str) -> str:
    name = node.create_pod(ns, three_container_pod("trio"))
    node.wait_running(ns, name)
    return name


def test_init_then_app_containers_run(node: NodeEnv, ns: str, pod: str) -> None:
    p = node.pod(ns, pod)
    init = container_status(p, "init")
    assert init.state.terminated.exit_code == 0 and init.state.terminated.reason == "Completed"
    for name in ("web", "worker", "reader"):
        status = container_status(p, name)
        assert status.ready and status.state.running and status.restart_count == 0
        assert status.image_id, "kubelet shows the image id cri-py reports"
    assert node.kubectl("logs", "-n", ns, pod, "-c", "init").stdout == "init log line\n"
    assert "web-started" in node.kubectl("logs", "-n", ns, pod, "-c", "web").stdout
    # the init container's file reached the app containers through the emptyDir
    assert (
        node.kubectl("exec", "-n", ns, pod, "-c", "web", "--", "cat", "/www/index.html").stdout
        == "init-ran\n"
    )


def test_logs_follow_and_previous(node: NodeEnv, ns: str, pod: str) -> None:
    follow = node.kubectl_popen("logs", "-f", "-n", ns, pod, "-c", "worker", stdout=subprocess.PIPE)
    try:
        assert follow.stdout is not None
        seen = [read_line(follow.stdout).decode() for _ in range(5)]
    finally:
        follow.kill()
        follow.wait()
    assert seen[0].startswith("worker-run-") and all(line.startswith("tick ") for line in seen[1:]), seen
    ticks = [int(line.split()[1]) for line in seen[1:]]
    assert ticks == sorted(ticks) and len(set(ticks)) == 4
    first_run = seen[0].strip()

    # the exec may be cut short by its own container ending (exit 137): either way the signal went
    killed = node.kubectl("exec", "-n", ns, pod, "-c", "worker", "--", "kill", "1", check=False)
    assert killed.returncode in (0, 137), killed.stderr
    p = node.wait_pod(ns, pod, lambda p: container_status(p, "worker").restart_count == 1 and
                      container_status(p, "worker").state.running, 90, "worker restarted")  # fmt: skip
    last = container_status(p, "worker").last_state.terminated
    assert last.exit_code == 3 and last.reason == "Error"
    previous = node.kubectl("logs", "--previous", "-n", ns, pod, "-c", "worker").stdout
    assert previous.startswith(first_run + "\n") and previous.rstrip().endswith("worker-term")
    current = wait_for(lambda: node.kubectl("logs", "-n", ns, pod, "-c", "worker").stdout, 10, "new logs")
    assert current.startswith("worker-run-") and first_run not in current


def test_exec_exit_codes_and_streams(node: NodeEnv, ns: str, pod: str) -> None:
    proc = node.kubectl("exec", "-n", ns, pod, "-c", "web", "--", "sh", "-c", "echo out; echo err >&2; exit 7",
                        check=False)  # fmt: skip
    assert proc.returncode == 7
    assert proc.stdout == "out\n" and "err\n" in proc.stderr
    proc = node.kubectl(
        "exec", "-i", "-n", ns, pod, "-c", "web", "--", "sh", "-c", "tr a-z A-Z", input="shout\n"
    )
    assert proc.stdout == "SHOUT\n"
    missing = node.kubectl("exec", "-n", ns, pod, "-c", "web", "--", "/no/such/binary", check=False)
    assert missing.returncode != 0


def _pty_session(
    node: NodeEnv, args: list[str], send: bytes, expect: bytes, timeout: float = 30
) -> tuple[int, bytes]:
    """Run kubectl on a pseudo-terminal (as a user's shell would), type `send`, read to `expect`."""
    leader, follower = pty.openpty()
    proc = node.kubectl_popen(*args, stdin=follower, stdout=follower, stderr=follower, start_new_session=True)
    os.close(follower)
    out = b""
    try:
        deadline = time.monotonic() + timeout
        sent = False
        while time.monotonic() < deadline:
            ready_fds, _, _ = select.select([leader], [], [], 0.2)
            if ready_fds:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            if not sent and (b"$ " in out or b"# " in out or time.monotonic() > deadline - timeout + 3):
                os.write(leader, send)
                sent = True
            if proc.poll() is not None and expect in out:
                break
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(leader)
    return code, out


def test_exec_interactive_terminal(node: NodeEnv, ns: str, pod: str) -> None:
    code, out = _pty_session(
        node, ["exec", "-it", "-n", ns, pod, "-c", "web", "--", "sh"],
        b"tty; echo answer=$((6*7)); exit 5\r", b"answer=42",
    )  # fmt: skip
    assert b"answer=42" in out, out
    assert b"/dev/pts/" in out, out  # the shell ran on a terminal of its own
    assert code == 5, out


def test_attach(node: NodeEnv, ns: str, pod: str) -> None:
    proc = node.kubectl_popen(
        "attach", "-i", "-q", "-n", ns, pod, "-c", "reader", stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"hello\n")
        proc.stdin.flush()
        line = read_line(proc.stdout)
        assert line == b"got:hello\n", line
    finally:
        proc.kill()
        proc.wait()
    # what went through attach is in the container's log too
    assert "got:hello" in node.kubectl("logs", "-n", ns, pod, "-c", "reader").stdout


def test_port_forward(node: NodeEnv, ns: str, pod: str) -> None:
    port = free_port()
    forward = node.kubectl_popen("port-forward", "-n", ns, pod, f"{port}:8080", stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)  # fmt: skip
    try:
        body = wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/", timeout=2).text, 30, "port-forward")
        assert body == "init-ran\n"
        for _ in range(3):  # new connections through the same forward
            assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text == "init-ran\n"
    finally:
        forward.terminate()
        forward.wait(10)


def test_cp_both_ways(node: NodeEnv, ns: str, pod: str, tmp_path: Path) -> None:
    payload = os.urandom(200_000)
    src = tmp_path / "up.bin"
    src.write_bytes(payload)
    node.kubectl("cp", str(src), f"{ns}/{pod}:/tmp/up.bin", "-c", "web")
    size = node.kubectl("exec", "-n", ns, pod, "-c", "web", "--", "wc", "-c", "/tmp/up.bin").stdout.split()[0]
    assert int(size) == len(payload)
    node.kubectl("exec", "-n", ns, pod, "-c", "web", "--", "sh", "-c",
                 "mkdir -p /tmp/d/sub && echo one > /tmp/d/a && echo two > /tmp/d/sub/b")  # fmt: skip
    back = tmp_path / "down.bin"
    node.kubectl("cp", f"{ns}/{pod}:/tmp/up.bin", str(back), "-c", "web")
    assert back.read_bytes() == payload
    node.kubectl("cp", f"{ns}/{pod}:/tmp/d", str(tmp_path / "d"), "-c", "web")
    assert (tmp_path / "d" / "a").read_text() == "one\n"
    assert (tmp_path / "d" / "sub" / "b").read_text() == "two\n"
