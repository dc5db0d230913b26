"""One real cluster per session (hack/node's Cluster) and a namespace per test.

The session brings the node up in a directory of its own, runs the tests against it with the
kubernetes client and the built kubectl, takes it down, and fails if anything of it is left
on the host. NODE_KEEP_LOGS=1 keeps the components' logs (they are kept anyway when a test failed).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.node.cluster_env import NodeEnv, host_traces, make_env, unique, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "hack"))

from nodelib.cluster import Cluster, build_binaries  # noqa: E402

BIN_DIR = pytest.StashKey[Path]()


def pytest_sessionstart(session: pytest.Session) -> None:
    """Build (or find) the Kubernetes binaries before any test's timeout runs: a cold build
    takes minutes."""
    if os.geteuid() == 0:
        session.config.stash[BIN_DIR] = build_binaries()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="the node suite needs root")
        for item in items:
            if "tests/node/" in str(item.fspath):
                item.add_marker(skip)


@pytest.fixture(scope="session")
def node(request: pytest.FixtureRequest) -> Iterator[NodeEnv]:
    bin_dir = request.config.stash.get(BIN_DIR, None) or build_binaries()
    directory = Path(tempfile.mkdtemp(prefix="cripy-node-", dir="/tmp"))
    cluster = Cluster(directory)
    cluster.up(bin_dir=bin_dir, log=lambda line: print(line, file=sys.stderr))
    slot = cluster.slot
    env = make_env(cluster)
    try:
        yield env
    finally:
        env.api_client.close()
        problems = cluster.down(keep_logs=True)
        problems += host_traces(cluster.layout, slot)
        if problems or request.session.testsfailed or os.environ.get("NODE_KEEP_LOGS"):
            print(f"\nnode logs kept in {cluster.layout.logs}", file=sys.stderr)
        else:
            shutil.rmtree(directory, ignore_errors=True)
        assert not problems, "the node left things behind:\n" + "\n".join(problems)


@pytest.fixture
def ns(node: NodeEnv) -> Iterator[str]:
    """A namespace for one test; deleted afterwards (its pods go the way kubelet removes pods)."""
    name = unique("t")
    node.core.create_namespace({"metadata": {"name": name}})
    # pods need the namespace's default service account, made by the controller-manager
    wait_for(
        lambda: node.core.read_namespaced_service_account("default", name), 30, "default service account"
    )
    yield name
    node.core.delete_namespace(name, grace_period_seconds=0)
