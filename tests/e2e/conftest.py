"""Fixtures for the end-to-end suite: real daemons, real runtimes, the suite's own pod network."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any, TextIO

import pytest

from tests.e2e.daemon import (
    E2E_BRIDGE,
    E2E_SUBNET,
    Daemon,
    drop_shared_portmap_chains,
    portmap_chains_exist,
    running_daemon,
)

GUARD_RULE = ["FORWARD", "-s", E2E_SUBNET, "!", "-d", E2E_SUBNET, "-j", "DROP"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="the end-to-end suite needs root")
        for item in items:
            if "tests/e2e/" in str(item.fspath):
                item.add_marker(skip)


E2E_LOCK = "/run/lock/cri-py-e2e.lock"


E2E_LOCK_FILE = pytest.StashKey[TextIO]()


def pytest_sessionstart(session: pytest.Session) -> None:
    """The suite's bridge, subnet and guard rule are fixed names: two sessions on one host (two
    checkouts, say) would tear down each other's network, so the second waits for the first.
    It waits here, before any test runs: a fixture's wait would count against the first
    test's timeout."""
    if os.geteuid() != 0:
        return
    os.makedirs(os.path.dirname(E2E_LOCK), exist_ok=True)
    lock = open(E2E_LOCK, "w")  # noqa: SIM115 - held until the session finishes
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"\ne2e: waiting for another end-to-end session on this host ({E2E_LOCK})", flush=True)
        fcntl.flock(lock, fcntl.LOCK_EX)
    session.stash[E2E_LOCK_FILE] = lock


def pytest_sessionfinish(session: pytest.Session) -> None:
    lock = session.stash.get(E2E_LOCK_FILE, None)
    if lock is not None:
        lock.close()


@pytest.fixture(scope="session", autouse=True)
def pod_network_guard() -> Iterator[None]:
    """Pods on the suite's bridge may talk to each other and nothing else (see this-machine.md)."""
    if os.geteuid() != 0 or shutil.which("iptables") is None:
        yield
        return
    had_portmap_chains = portmap_chains_exist()
    # the host lock is ours: a copy already there was left by a session that was killed
    while subprocess.run(["iptables", "-w", "-D", *GUARD_RULE], capture_output=True).returncode == 0:
        pass
    subprocess.run(["iptables", "-w", "-I", *GUARD_RULE], check=True)
    try:
        yield
    finally:
        subprocess.run(["iptables", "-w", "-D", *GUARD_RULE], check=False)
        if not had_portmap_chains:
            drop_shared_portmap_chains()
        # the bridge plugin creates the bridge and leaves it; it belongs to the suite
        subprocess.run(["ip", "link", "del", E2E_BRIDGE], check=False, capture_output=True)


@pytest.fixture
def cri_factory() -> Iterator[Any]:
    """Start daemons with config overrides: `cri_factory({"log_size_max": 1024})`, and
    environment variables: `cri_factory(env={"CRI_PY_FAILPOINTS": "..."})`."""
    stack: list[Any] = []

    def start(overrides: dict[str, Any] | None = None, env: dict[str, str] | None = None) -> Daemon:
        manager = running_daemon(overrides, env=env)
        daemon = manager.__enter__()
        stack.append(manager)
        return daemon

    yield start
    errors: list[BaseException] = []
    for manager in reversed(stack):
        try:
            manager.__exit__(None, None, None)
        except BaseException as exc:  # report every daemon's leftovers, not just the first
            errors.append(exc)
    if errors:
        raise errors[0]


@pytest.fixture
def cri(cri_factory: Any) -> Daemon:
    """A fresh daemon for one test, with the suite's pod network configured."""
    daemon: Daemon = cri_factory()
    return daemon
