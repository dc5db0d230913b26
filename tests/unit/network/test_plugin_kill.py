"""A CNI plugin past its time limit, or whose caller is cancelled, goes with what it started
(a delegated IPAM plugin, an iptables run): they hold the plugin's stdout and stderr."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cri_py.network.plugin import CniPluginError, PluginEnv, exec_plugin
from tests.unit.sleepers import kill_left_sleepers, sleepers


@pytest.fixture
def hanging_plugin(tmp_path: Path) -> Iterator[Path]:
    plugin = tmp_path / "hang"
    plugin.write_text("#!/bin/sh\nsleep 3577 &\nwait\n")
    plugin.chmod(0o755)
    yield plugin
    for pid in sleepers(3577):
        os.kill(pid, 9)


async def _outcome(call: asyncio.Future[object]) -> tuple[bool, list[int]]:
    """Whether the call ended within 10 s, and the plugin's children left 1 s later (killed
    then, so that a call stuck on their pipes ends too)."""
    ended, _ = await asyncio.wait({call}, timeout=10)
    left = await kill_left_sleepers(3577, grace=1.0)
    await asyncio.gather(call, return_exceptions=True)
    return bool(ended), left


def test_a_plugin_past_its_time_limit_is_killed_with_its_children(hanging_plugin: Path) -> None:
    async def scenario() -> tuple[bool, list[int], BaseException | None]:
        call = asyncio.ensure_future(
            exec_plugin(hanging_plugin, PluginEnv("ADD"), b"{}", cni_path="", time_limit=0.5)
        )
        ended, left = await _outcome(call)
        return ended, left, call.exception()

    began = time.monotonic()
    ended, left, error = asyncio.run(scenario())
    assert ended and time.monotonic() - began < 5, "the call outlived its time limit"
    assert isinstance(error, CniPluginError) and "timed out after 0.5s" in str(error)
    assert left == [], "the plugin's child ran on"


def test_a_cancelled_plugin_call_is_killed_with_its_children(hanging_plugin: Path) -> None:
    async def scenario() -> tuple[bool, list[int], bool]:
        call = asyncio.ensure_future(
            exec_plugin(hanging_plugin, PluginEnv("ADD"), b"{}", cni_path="", time_limit=60)
        )
        while not sleepers(3577):  # noqa: ASYNC110 - a process of its own, nothing to wait on
            await asyncio.sleep(0.02)
        call.cancel()
        ended, left = await _outcome(call)
        return ended, left, call.cancelled()

    ended, left, cancelled = asyncio.run(scenario())
    assert ended and cancelled, "the cancelled call did not end"
    assert left == [], "the plugin's child ran on"
