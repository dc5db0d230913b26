"""Running one CNI plugin binary: environment, stdin, result or error (CNI spec §3, §6)."""

from __future__ import annotations

import asyncio
import errno
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cri_py.errors import Internal
from cri_py.oci.process import kill_group, spawn

# libcni retries an exec that hits a binary still being written
_BUSY_RETRIES = 5
_BUSY_DELAY = 0.2


class CniPluginError(Internal):
    """A plugin answered with a CNI error (or died); keeps the plugin's own code and message."""

    def __init__(self, plugin: str, command: str, code: int, msg: str, details: str = "") -> None:
        self.plugin = plugin
        self.command = command
        self.code = code
        self.msg = msg
        self.details = details
        text = f"CNI plugin {plugin} {command} failed (code {code}): {msg}"
        if details:
            text += f": {details}"
        super().__init__(text)


@dataclass(frozen=True)
class PluginEnv:
    """The per-invocation CNI_* variables; STATUS, GC and VERSION use only the command."""

    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: Sequence[tuple[str, str]] = ()

    def render(self, cni_path: str, base: Mapping[str, str]) -> dict[str, str]:
        env = {k: v for k, v in base.items() if not k.startswith("CNI_")}
        env["CNI_COMMAND"] = self.command
        env["CNI_PATH"] = cni_path
        if self.container_id:
            env["CNI_CONTAINERID"] = self.container_id
        if self.netns:
            env["CNI_NETNS"] = self.netns
        if self.ifname:
            env["CNI_IFNAME"] = self.ifname
        if self.args:
            env["CNI_ARGS"] = ";".join(f"{k}={v}" for k, v in self.args)
        return env


def find_plugin(kind: str, bin_dirs: Sequence[Path]) -> Path | None:
    for directory in bin_dirs:
        candidate = directory / kind
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def _error_from_output(plugin: str, command: str, returncode: int, out: bytes, err: bytes) -> CniPluginError:
    try:
        doc = json.loads(out) if out.strip() else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        doc = None
    if isinstance(doc, dict) and ("code" in doc or "msg" in doc):
        code = doc.get("code")
        return CniPluginError(
            plugin,
            command,
            code if isinstance(code, int) else 999,
            str(doc.get("msg", "")),
            str(doc.get("details", "")),
        )
    # libcni's fallback: no JSON error, so stderr (or stdout) carries the message
    text = (err.strip() or out.strip()).decode(errors="replace")
    return CniPluginError(plugin, command, 999, text or f"exited with status {returncode}")


async def exec_plugin(
    binary: Path,
    env: PluginEnv,
    stdin: bytes,
    *,
    cni_path: str,
    time_limit: float,
) -> dict[str, Any] | None:
    """Run the plugin; return its JSON result (None when it prints nothing) or raise CniPluginError."""
    full_env = env.render(cni_path, os.environ)
    attempt = 0
    while True:
        try:
            # a session of its own: a kill takes the plugin with what it started (a delegated
            # IPAM plugin, an iptables run), which hold its stdout and stderr
            proc = await spawn(
                [str(binary)],
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=full_env,
            )
            break
        except OSError as exc:
            if exc.errno == errno.ETXTBSY and attempt < _BUSY_RETRIES:
                attempt += 1
                await asyncio.sleep(_BUSY_DELAY)
                continue
            raise CniPluginError(binary.name, env.command, 999, f"cannot run {binary}: {exc}") from exc
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), time_limit)
    except TimeoutError:
        await kill_group(proc)
        raise CniPluginError(binary.name, env.command, 999, f"timed out after {time_limit:g}s") from None
    except BaseException:
        await kill_group(proc)
        raise
    if proc.returncode != 0:
        raise _error_from_output(binary.name, env.command, proc.returncode or 0, out, err)
    if not out.strip():
        return None
    try:
        doc = json.loads(out)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CniPluginError(binary.name, env.command, 6, f"unreadable result: {exc}") from exc
    if not isinstance(doc, dict):
        raise CniPluginError(binary.name, env.command, 6, "result is not a JSON object")
    return doc
