"""The daemon object: owns the config, the store and the services, start-up recovery and shutdown.

All mutable state of a running cri-py lives here (or in the services it owns); nothing is global.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import stat
import time
from pathlib import Path
from typing import Any

import grpc

from cri_py.config import Config, ConfigError, load_config
from cri_py.image.service import ImageService
from cri_py.logs import set_level
from cri_py.network.manager import NetworkManager
from cri_py.server.app import build_server
from cri_py.storage.rootfs import RootfsManager
from cri_py.store import Database
from cri_py.streaming.server import StreamingServer

log = logging.getLogger("cri_py.daemon")


class DaemonError(Exception):
    """The daemon cannot start (socket in use, unusable directories)."""


class Daemon:
    def __init__(
        self, config: Config, config_file: Path | None = None, overrides: dict[str, Any] | None = None
    ):
        self.config = config
        self._config_file = config_file
        self._overrides = overrides or {}
        self.ready = False
        self.pod_cidr = ""
        self.db: Database | None = None
        self.images: ImageService | None = None
        self.rootfs: RootfsManager | None = None
        self.network: NetworkManager | None = None
        self.pods: Any = None
        self.containers: Any = None
        self.streaming: StreamingServer | None = None
        self._server: grpc.aio.Server | None = None
        self._stopping = asyncio.Event()

    @staticmethod
    def now_ns() -> int:
        return time.time_ns()

    def network_status(self) -> tuple[bool, str, str]:
        if self.network is None:
            return (
                False,
                "NetworkPluginNotReady",
                f"Network plugin returns error: no CNI configuration file in {self.config.cni.conf_dir}/",
            )
        return self.network.status()

    def _live_pod_ids(self) -> set[str]:
        """Pods the store knows; CNI attachments of any other pod are garbage."""
        if self.pods is None:
            return set()
        return set(self.pods.pod_ids())

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store, wire the services and recover what a previous run left."""
        config = self.config
        for directory in (config.root, config.run_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self.db = Database(config.root / "state.db")
        # ---- services wiring: each area adds its service here --------------------------------
        self.images = ImageService(config, self.db)
        self.rootfs = RootfsManager(config)
        # ImageFsInfo reports this directory from the first call on, before any container exists
        self.rootfs.mountpoint().mkdir(parents=True, exist_ok=True)
        self.network = NetworkManager(config.cni, config.run_dir)
        await self.images.start()
        # pods and containers (issue 5): one runtime set shared by both services
        from cri_py.container.service import ContainerService
        from cri_py.oci.registry import RuntimeSet
        from cri_py.pod.service import PodService

        runtimes = RuntimeSet(config)
        self.pods = PodService(config, self.db, runtimes, self.network)
        self.containers = ContainerService(config, self.db, runtimes, self.pods, self.images, self.rootfs)
        self.images.in_use = self.containers.image_in_use
        await self.pods.recover()
        await self.containers.recover()
        self.streaming = StreamingServer.from_config(config)
        await self.streaming.start()
        # ---- end of services wiring ----------------------------------------------------------
        # after the pods are known: releases CNI attachments of pods that no longer exist
        await self.network.start(self._live_pod_ids)
        self.ready = True

    async def serve(self) -> None:
        """Start, bind the socket, serve until SIGTERM/SIGINT; SIGHUP reloads."""
        await self.start()
        socket_path = self.config.socket_path
        prepare_socket_path(socket_path)
        self._server = build_server(self)
        self._server.add_insecure_port(self.config.listen)
        await self._server.start()
        os.chmod(socket_path, 0o660)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stopping.set)
        loop.add_signal_handler(signal.SIGINT, self._stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        log.info("serving", extra={"socket": str(socket_path), "root": str(self.config.root)})
        await self._stopping.wait()
        log.info("stopping; containers keep running")
        await self.shutdown()

    async def shutdown(self) -> None:
        self.ready = False
        if self._server is not None:
            await self._server.stop(grace=2.0)
            self._server = None
        # ---- services shutdown: each area stops its background work here ---------------------
        if self.streaming is not None:
            await self.streaming.stop()  # ends exec sessions before their containers' services go
        if self.containers is not None:
            await self.containers.close()
        if self.pods is not None:
            await self.pods.close()
        if self.network is not None:
            await self.network.stop()
        if self.images is not None:
            await self.images.close()
        # ---- end of services shutdown --------------------------------------------------------
        if self.db is not None:
            self.db.close()
            self.db = None

    def reload(self) -> None:
        """SIGHUP: re-read the config files and apply what can change at run time."""
        try:
            new = load_config(self._config_file, self._overrides)
        except ConfigError as exc:
            log.error("reload failed, keeping the running config", extra={"error": str(exc)})
            return
        old = self.config
        changes = {}
        if new.log_level != old.log_level:
            changes["log_level"] = f"{old.log_level}->{new.log_level}"
            set_level(new.log_level)
        if new.registries != old.registries:
            changes["registries"] = ",".join(sorted(new.registries)) or "(none)"
        # only the reloadable keys move; everything else needs a restart
        self.config = _replace(old, log_level=new.log_level, registries=new.registries)
        if self.images is not None:
            self.images.reload(self.config)  # the next pull uses the new registries
        log.info("config reloaded", extra=changes or {"changes": "none"})


def _replace(config: Config, **fields: Any) -> Config:
    import dataclasses

    return dataclasses.replace(config, **fields)


def prepare_socket_path(path: Path) -> None:
    """Create the socket's directory; replace a stale socket, refuse one a live daemon answers on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise DaemonError(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(str(path))
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise DaemonError(f"cannot probe {path}: {exc}") from exc
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        log.info("removed stale socket", extra={"socket": str(path)})
        return
    finally:
        probe.close()
    raise DaemonError(f"another daemon is serving on {path}")
