"""The daemon object: owns the config, the root lock, the store, the event bus, the background
tasks and the services; start-up recovery and shutdown.

All mutable state of a running cri-py lives here (or in the services it owns); nothing is global.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import signal
import socket
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from cri_py import failpoints
from cri_py.config import Config, ConfigError, load_config
from cri_py.events import EventBus
from cri_py.logs import set_level
from cri_py.server.app import build_server
from cri_py.services import Services
from cri_py.store import Database, DatabaseUnusable
from cri_py.tasks import TaskOwner

if TYPE_CHECKING:
    from cri_py.metrics.endpoint import MetricsEndpoint
    from cri_py.metrics.inspect_api import InspectAPI

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
        # subscribers (the events RPC, metrics) may register before start
        self.events = EventBus()
        self.tasks = TaskOwner()
        self.db: Database | None = None
        self._services: Services | None = None
        self._root_lock: int = -1
        self._server: grpc.aio.Server | None = None
        self._metrics: MetricsEndpoint | None = None
        self._inspect: InspectAPI | None = None
        self._stopping = asyncio.Event()

    @staticmethod
    def now_ns() -> int:
        return time.time_ns()

    @property
    def services(self) -> Services:
        if self._services is None:
            raise DaemonError("the daemon has not started")
        return self._services

    def network_status(self) -> tuple[bool, str, str]:
        if self._services is None:
            return (
                False,
                "NetworkPluginNotReady",
                f"Network plugin returns error: no CNI configuration file in {self.config.cni.conf_dir}/",
            )
        return self._services.network.status()

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Lock the root, open the store, build the services and recover what a previous run left."""
        config = self.config
        if failpoints.unknown():
            raise DaemonError(f"{failpoints.ENV} names unknown failpoints: {', '.join(failpoints.unknown())}")
        if failpoints.ARMED:
            log.warning(
                "failpoints armed: the daemon kills itself at them",
                extra={"failpoints": ",".join(sorted(failpoints.ARMED))},
            )
        for directory in (config.root, config.run_dir):
            directory.mkdir(parents=True, exist_ok=True)
        # before anything else touches the root: a second daemon must change nothing
        self._root_lock = lock_root(config.root)
        self.db = Database(config.root / "state.db")
        try:
            services = Services.build(config, self.db, self.events, self.tasks)
        except DatabaseUnusable:
            self.db.close(checkpoint=False)  # refused: not even the WAL is folded in
            self.db = None
            raise
        if config.metrics.enabled:
            # subscribed before recovery: exits found then are counted too
            self._metrics = _metrics_endpoint(self, services)
        await services.recover()
        self._services = services
        self.ready = True

    async def serve(self) -> None:
        """Start, bind the socket, serve until SIGTERM/SIGINT; SIGHUP reloads."""
        try:
            await self.start()
            socket_path = self.config.socket_path
            prepare_socket_path(socket_path)
            self._server = build_server(self, self.services)
            self._server.add_insecure_port(self.config.listen)
            await self._server.start()
            self.services.events_feed.serving()
            if self._metrics is not None:
                try:
                    await self._metrics.start()
                except OSError as exc:
                    endpoint = f"{self.config.metrics.address}:{self.config.metrics.port}"
                    raise DaemonError(f"metrics: cannot listen on {endpoint}: {exc.strerror}") from None
            if self.config.inspect_socket is not None:
                await self._serve_inspect(self.config.inspect_socket)
            os.chmod(socket_path, 0o660)
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGTERM, self._stopping.set)
            loop.add_signal_handler(signal.SIGINT, self._stopping.set)
            loop.add_signal_handler(signal.SIGHUP, self.reload)
            log.info("serving", extra={"socket": str(socket_path), "root": str(self.config.root)})
            for note in self.config.system_registries.ignored:
                log.warning("registries.conf setting not used", extra={"setting": note})
            await self._stopping.wait()
            log.info("stopping; containers keep running")
        finally:
            await self.shutdown()

    async def shutdown(self) -> None:
        """Stop serving, end the background work, then close the store (in that order)."""
        self.ready = False
        if self._services is not None:
            self._services.events_feed.close()  # event streams end now, not after the grace
        if self._server is not None:
            await self._server.stop(grace=2.0)
            self._server = None
        if self._metrics is not None:
            await self._metrics.close()
            self._metrics = None
        if self._inspect is not None:
            await self._inspect.close()
            self._inspect = None
        services = self._services
        if services is not None:
            await services.streaming.stop()  # ends exec sessions before their containers' services go
        # nothing may write to the store after it closes: every owned task ends first
        await self.tasks.close()
        if services is not None:
            await services.close()
        if self.db is not None:
            self.db.close()
            self.db = None
        if self._root_lock >= 0:
            os.close(self._root_lock)
            self._root_lock = -1

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
        if new.system_registries != old.system_registries or new.registries_conf != old.registries_conf:
            conf = new.system_registries
            changes["registries_conf"] = (
                f"{len(conf.files)} files, {len(conf.rules)} [[registry]] tables, {len(conf.aliases)} aliases"
            )
        for key in ("auth_file", "signature_policy", "pinned_images"):
            if getattr(new, key) != getattr(old, key):
                changes[key] = str(getattr(new, key))
        # only the reloadable keys move; everything else needs a restart
        self.config = _replace(
            old,
            log_level=new.log_level,
            registries=new.registries,
            registries_conf=new.registries_conf,
            system_registries=new.system_registries,
            auth_file=new.auth_file,
            signature_policy=new.signature_policy,
            pinned_images=new.pinned_images,
        )
        if self._services is not None:
            self._services.images.reload(self.config)  # the next pull uses the new registries
        log.info("config reloaded", extra=changes or {"changes": "none"})
        for note in new.system_registries.ignored:
            log.warning("registries.conf setting not used", extra={"setting": note})

    async def _serve_inspect(self, path: Path) -> None:
        """CRI-O's inspect API for kubelet's cAdvisor; a live CRI-O on the socket is an error."""
        from cri_py.metrics.inspect_api import InspectAPI

        prepare_socket_path(path)
        services = self.services
        self._inspect = InspectAPI(path, services.containers.store, services.sandboxes, services.rootfs)
        try:
            await self._inspect.start()
        except OSError as exc:
            self._inspect = None
            raise DaemonError(f"inspect_socket: cannot listen on {path}: {exc.strerror}") from None


def _metrics_endpoint(daemon: Daemon, services: Services) -> MetricsEndpoint:
    """prometheus_client is imported only here: a daemon without metrics does not carry it."""
    from cri_py.metrics.endpoint import MetricsEndpoint
    from cri_py.metrics.prometheus import DaemonMetrics

    metrics = DaemonMetrics(
        daemon.events, services.sandboxes, services.containers.store, services.events_feed
    )
    return MetricsEndpoint(metrics, daemon.config.metrics.address, daemon.config.metrics.port)


def lock_root(root: Path) -> int:
    """Hold an exclusive lock on the root directory for the daemon's lifetime (an open fd
    with flock; the kernel drops it when the process dies). A second daemon on the same
    root gets DaemonError before it reads or changes anything."""
    path = root / "cri-py.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise DaemonError(f"another cri-py (pid {holder}) is using the root {root}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


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
