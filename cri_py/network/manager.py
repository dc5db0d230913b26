"""Pod networking through CNI: the default network of the conf dir, ADD/DEL per pod, GC.

One attachment per pod (the default network on eth0). Results live in an on-disk cache so a
restarted daemon tears down with the same configuration and prevResult it set up with.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cri_py.config.model import CniConfig
from cri_py.errors import FailedPrecondition, Internal, InvalidArgument
from cri_py.network import netns as netns_ops
from cri_py.network.cache import Attachment, AttachmentCache
from cri_py.network.capargs import (
    CapabilityError,
    bandwidth_arg,
    dns_arg,
    port_mappings_arg,
    runtime_config_for,
)
from cri_py.network.conf import NetworkConfList, plugin_stdin, version_at_least
from cri_py.network.loader import LoadedNetworks, VersionCache, conf_dir_signature, load_networks
from cri_py.network.plugin import CniPluginError, PluginEnv, exec_plugin, find_plugin
from cri_py.network.result import (
    primary_and_additional,
    result_addresses,
    result_cidrs,
    result_interfaces,
)
from cri_py.network.rtnl import NetnsReader
from cri_py.network.watch import DirWatch

if TYPE_CHECKING:
    from cri_py.events import EventBus

log = logging.getLogger(__name__)

NOT_READY = "NetworkPluginNotReady"
SETTLE_DELAY = 0.05
IFNAME = "eth0"


@dataclass
class PodNetworkRequest:
    pod_id: str
    name: str
    namespace: str
    uid: str
    netns: Path
    # api_pb2.PortMapping messages (or capargs.PortMappingArg)
    port_mappings: list[Any] = field(default_factory=list)
    # kubernetes.io/ingress-bandwidth and egress-bandwidth are read from here
    annotations: dict[str, str] = field(default_factory=dict)
    # api_pb2.DNSConfig or None
    dns: Any = None


@dataclass
class PodNetworkResult:
    ip: str
    additional_ips: list[str]
    network: str
    interfaces: list[str]
    raw: dict[str, Any]


def _to_result(attachment: Attachment) -> PodNetworkResult:
    raw = attachment.result or {}
    ip, additional = primary_and_additional(result_addresses(raw, attachment.ifname))
    return PodNetworkResult(ip, additional, attachment.network.name, result_interfaces(raw), raw)


class NetworkManager:
    def __init__(
        self,
        config: CniConfig,
        run_dir: Path,
        *,
        poll_interval: float = 1.0,
        status_interval: float = 10.0,
        plugin_timeout: float = 60.0,
        skip_loopback: bool = True,
        retry_interval: float = 5.0,
        stand_in_netns: bool = True,
        events: EventBus | None = None,
    ) -> None:
        self.config = config
        # where each plugin call's latency is published (metrics); None = not measured
        self._events = events
        self.run_dir = run_dir
        self.poll_interval = poll_interval
        self.status_interval = status_interval
        self.plugin_timeout = plugin_timeout
        self.skip_loopback = skip_loopback
        self.retry_interval = retry_interval
        self.stand_in_netns = stand_in_netns
        self._cni_path = ":".join(str(d) for d in config.bin_dirs)
        self._cache = AttachmentCache(config.cache_dir)
        self._versions = VersionCache()
        self._loaded: LoadedNetworks | None = None
        self._signature: tuple[tuple[str, int, int], ...] | None = None
        self._status_error: str | None = None
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._known: dict[str, Attachment] = {}
        # each pod's parsed addresses, with the attachment and result they came from
        self._results: dict[str, tuple[Attachment, dict[str, Any] | None, PodNetworkResult]] = {}
        # per pod, a netlink socket inside its netns for the status and stats reads (closed on DEL)
        self._readers: dict[str, NetnsReader] = {}
        self._watcher: asyncio.Task[None] | None = None

    # ---- lifecycle ---------------------------------------------------------------------

    async def start(self, valid_pod_ids: Callable[[], set[str]]) -> None:
        """Load the conf dir, release attachments of pods that are gone, start watching."""
        # watching starts before the first load, so no change in between goes unseen
        watch = DirWatch(self.config.conf_dir)
        watch.start()
        try:
            await self.reload()
            await self.gc(valid_pod_ids())
        except BaseException:
            watch.close()
            raise
        self._watcher = asyncio.create_task(self._watch(watch), name="cni-conf-watch")

    async def stop(self) -> None:
        for pod_id in list(self._readers):
            self.close_reader(pod_id)
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None

    async def reload(self) -> None:
        """Read the conf dir again (also called by the watcher when it changed)."""
        self._signature = await asyncio.to_thread(conf_dir_signature, self.config.conf_dir)
        loaded = await load_networks(self.config.conf_dir, self.config.bin_dirs, self._versions)
        previous = self._loaded.default.name if self._loaded and self._loaded.default else None
        self._loaded = loaded
        current = loaded.default.name if loaded.default else None
        if current != previous:
            log.info("CNI default network: %s (from %s)", current, self.config.conf_dir)
        await self._check_status()

    async def _watch(self, watch: DirWatch) -> None:
        """Reload on inotify events in the conf dir; a slow poll covers what inotify can't see."""
        last_status = time.monotonic()
        last_retry = time.monotonic()
        try:
            while True:
                if await watch.wait(self.poll_interval):
                    # let a writer finish the file it just created
                    await asyncio.sleep(SETTLE_DELAY)
                    watch.changed.clear()
                now = time.monotonic()
                try:
                    if not watch.active or not watch.directory.is_dir():
                        watch.start()  # (re)attach once the directory exists
                    signature = await asyncio.to_thread(conf_dir_signature, self.config.conf_dir)
                    ready = self._loaded is not None and self._loaded.default is not None
                    # an unusable conf may become usable when its plugin binary is installed
                    if signature != self._signature or (not ready and now - last_retry > self.retry_interval):
                        last_retry = now
                        await self.reload()
                        last_status = now
                    elif now - last_status > self.status_interval:
                        last_status = now
                        await self._check_status()
                except Exception:  # the watcher must outlive one bad reload
                    log.exception("CNI conf dir watch")
        finally:
            watch.close()

    # ---- readiness ---------------------------------------------------------------------

    def status(self) -> tuple[bool, str, str]:
        """(ready, reason, message) for the CRI Status RPC's NetworkReady condition."""
        loaded = self._loaded
        if loaded is None:
            return False, NOT_READY, "Network plugin returns error: CNI not initialized"
        if loaded.default is None:
            message = (
                f"Network plugin returns error: no CNI configuration file in {self.config.conf_dir}. "
                "Has your network provider started?"
            )
            if loaded.skipped:
                skipped = "; ".join(f"{name}: {why}" for name, why in sorted(loaded.skipped.items()))
                message += f" (skipped {skipped})"
            return False, NOT_READY, message
        if self._status_error is not None:
            return False, NOT_READY, f"Network plugin returns error: {self._status_error}"
        return True, "", ""

    async def _check_status(self) -> None:
        """CNI STATUS (1.1.0) of the default network's plugins; older networks have none."""
        loaded = self._loaded
        network = loaded.default if loaded else None
        if loaded is None or network is None or not version_at_least(network.cni_version, "1.1.0"):
            self._status_error = None
            return
        error: str | None = None
        for index, kind in enumerate(network.plugin_types):
            try:
                await exec_plugin(
                    loaded.binaries[kind],
                    PluginEnv("STATUS"),
                    plugin_stdin(network, index, prev_result=None, runtime_config=None),
                    cni_path=self._cni_path,
                    time_limit=self.plugin_timeout,
                )
            except CniPluginError as exc:
                error = str(exc)
                break
        if error != self._status_error:
            log.warning("CNI network %s STATUS: %s", network.name, error or "ready again")
        self._status_error = error

    # ---- per pod -----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _pod_lock(self, pod_id: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(pod_id, (asyncio.Lock(), 0))
        self._locks[pod_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[pod_id]
            if users == 1:
                del self._locks[pod_id]
            else:
                self._locks[pod_id] = (lock, users - 1)

    def _binary(self, kind: str) -> Path:
        loaded = self._loaded
        binary = loaded.binaries.get(kind) if loaded else None
        if binary is None:
            binary = find_plugin(kind, self.config.bin_dirs)
        if binary is None:
            raise CniPluginError(kind, "exec", 999, f"plugin binary not found in {self._cni_path}")
        return binary

    async def _invoke(
        self,
        attachment: Attachment,
        index: int,
        command: str,
        netns: str,
        prev_result: dict[str, Any] | None,
    ) -> dict[str, Any] | None:
        network = attachment.network
        runtime_config = runtime_config_for(network.capabilities(index), attachment.capability_args)
        plugin = network.plugin_types[index]
        timed = self._events.timed("cni", command, plugin) if self._events else contextlib.nullcontext()
        with timed:
            return await exec_plugin(
                self._binary(plugin),
                PluginEnv(command, attachment.pod_id, netns, attachment.ifname, attachment.cni_args),
                plugin_stdin(network, index, prev_result=prev_result, runtime_config=runtime_config),
                cni_path=self._cni_path,
                time_limit=self.plugin_timeout,
            )

    def _plugins_to_run(self, network: NetworkConfList, add_args: dict[str, Any] | None = None) -> list[int]:
        """Indexes of the plugins to run for ADD, or for DEL with the args its ADD was given.

        Skipped, to save an exec each on the pod's set-up and teardown, are plugins that would
        only pass prevResult through: loopback (our pinned namespaces come with lo up), and a
        portmap that had no port mappings to program. DEL runs exactly what ADD ran.
        """
        run: list[int] = []
        for i, kind in enumerate(network.plugin_types):
            if self.skip_loopback and kind == "loopback" and not network.capabilities(i):
                continue
            if (
                add_args is not None
                and kind == "portmap"
                and "portMappings" not in add_args
                and "runtimeConfig" not in network.plugins[i]
            ):
                continue
            run.append(i)
        return run

    async def setup(self, req: PodNetworkRequest) -> PodNetworkResult:
        """CNI ADD of the default network into the pod's netns; on failure nothing stays."""
        loaded = self._loaded
        network = loaded.default if loaded else None
        if network is None:
            raise FailedPrecondition(self.status()[2])
        try:
            capability_args = self._capability_args(req)
        except CapabilityError as exc:
            raise InvalidArgument(str(exc)) from exc
        attachment = Attachment(
            pod_id=req.pod_id,
            network=network,
            ifname=IFNAME,
            netns=str(req.netns),
            netns_inode=netns_ops.netns_inode(req.netns),
            cni_args=[
                ("IgnoreUnknown", "1"),
                ("K8S_POD_NAMESPACE", req.namespace),
                ("K8S_POD_NAME", req.name),
                ("K8S_POD_INFRA_CONTAINER_ID", req.pod_id),
                ("K8S_POD_UID", req.uid),
            ],
            capability_args=capability_args,
        )
        async with self._pod_lock(req.pod_id):
            # written first: a crash during ADD still leaves what DEL needs
            self._cache.save(attachment)
            prev: dict[str, Any] | None = None
            try:
                for index in self._plugins_to_run(network, capability_args):
                    result = await self._invoke(attachment, index, "ADD", str(req.netns), prev)
                    if result is not None:
                        prev = result
            except BaseException as exc:
                attachment.result = prev
                await self._undo_failed_add(attachment, exc)
                raise
            attachment.result = prev or {}
            self._cache.save(attachment)
            self._known[req.pod_id] = attachment
            # kubelet asks PodSandboxStatus right after: the namespace's socket is ready by then
            with contextlib.suppress(OSError):
                await self._reader(req.pod_id, Path(attachment.netns))
            return _to_result(attachment)

    async def _undo_failed_add(self, attachment: Attachment, cause: BaseException) -> None:
        try:
            await self._delete(attachment, attachment.netns)
        except CniPluginError as exc:
            # keep the entry: a later teardown or the start-up GC tries again
            self._cache.save(attachment)
            log.warning("pod %s: DEL after failed ADD (%s) failed: %s", attachment.pod_id, cause, exc)
            return
        self._cache.delete(attachment.pod_id)

    def _capability_args(self, req: PodNetworkRequest) -> dict[str, Any]:
        supplied: dict[str, Any] = {}
        ports = port_mappings_arg(req.port_mappings)
        if ports:
            supplied["portMappings"] = ports
        bandwidth = bandwidth_arg(req.annotations)
        if bandwidth:
            supplied["bandwidth"] = bandwidth
        dns = dns_arg(req.dns)
        if dns:
            supplied["dns"] = dns
        if req.annotations:
            supplied["io.kubernetes.cri.pod-annotations"] = dict(req.annotations)
        return supplied

    async def _delete(self, attachment: Attachment, netns: str) -> None:
        """DEL through the chain in reverse; every plugin gets its turn, the first error is raised."""
        network = attachment.network
        prev = attachment.result if version_at_least(network.cni_version, "0.4.0") else None
        first_error: CniPluginError | None = None
        for index in reversed(self._plugins_to_run(network, attachment.capability_args)):
            try:
                await self._invoke(attachment, index, "DEL", netns, prev)
            except CniPluginError as exc:
                log.warning("pod %s: %s", attachment.pod_id, exc)
                first_error = first_error or exc
        if first_error is not None:
            raise first_error

    async def teardown(self, pod_id: str, netns: Path | None) -> None:
        """CNI DEL of the pod's attachment, from the cached configuration; idempotent."""
        async with self._pod_lock(pod_id):
            try:
                attachment = self._known.get(pod_id) or self._cache.load(pod_id)
            except ValueError as exc:
                log.warning("pod %s: dropping unreadable CNI cache entry: %s", pod_id, exc)
                self._cache.delete(pod_id)
                return
            self.close_reader(pod_id)
            if attachment is None:
                return
            candidates = [p for p in (netns, Path(attachment.netns) if attachment.netns else None) if p]
            live = next((p for p in candidates if netns_ops.is_pinned_netns(p)), None)
            if live is not None:
                await self._delete(attachment, str(live))
            else:
                await self._delete_without_netns(attachment)
            self._cache.delete(pod_id)
            self._known.pop(pod_id, None)
            self._results.pop(pod_id, None)

    async def _delete_without_netns(self, attachment: Attachment) -> None:
        """DEL after the pod's namespace is gone (removed early, or a reboot).

        CNI_NETNS is optional for DEL, but bridge then releases only the IP and keeps its
        masquerade rules; a stand-in namespace with the pod's addresses lets it find them.
        """
        cidrs = result_cidrs(attachment.result or {}, attachment.ifname)
        if not cidrs or not self.stand_in_netns:
            await self._delete(attachment, "")
            return
        stand_in_path = netns_ops.stand_in_netns_path(self.run_dir, attachment.pod_id)
        await asyncio.to_thread(netns_ops.remove_pinned_netns, stand_in_path)  # from a crash
        try:
            stand_in = await asyncio.to_thread(
                netns_ops.create_stand_in_netns, self.run_dir, attachment.pod_id, attachment.ifname, cidrs
            )
        except Exception as exc:  # netlink refused; DEL without a namespace still frees the IP
            log.warning("pod %s: no stand-in netns for DEL: %s", attachment.pod_id, exc)
            await self._delete(attachment, "")
            return
        try:
            await self._delete(attachment, str(stand_in))
        finally:
            await asyncio.to_thread(netns_ops.remove_pinned_netns, stand_in)

    def pod_ips(self, pod_id: str) -> PodNetworkResult | None:
        """The pod's addresses from the cached result, if its netns is still the one set up."""
        attachment = self._known.get(pod_id)
        if attachment is None:
            try:
                attachment = self._cache.load(pod_id)
            except ValueError:
                return None
            if attachment is None or attachment.result is None:
                return None
            self._known[pod_id] = attachment
        if not attachment.netns or attachment.result is None:
            return None
        inode = netns_ops.netns_inode(Path(attachment.netns))
        if inode is None or (attachment.netns_inode is not None and inode != attachment.netns_inode):
            return None
        # parsed once per result (kubelet asks for the pod's status every second or so)
        kept = self._results.get(pod_id)
        if kept is None or kept[0] is not attachment or kept[1] is not attachment.result:
            kept = (attachment, attachment.result, _to_result(attachment))
            self._results[pod_id] = kept
        parsed = kept[2]
        return dataclasses.replace(
            parsed, additional_ips=list(parsed.additional_ips), interfaces=list(parsed.interfaces)
        )

    async def verified_pod_ips(self, pod_id: str) -> PodNetworkResult | None:
        """Like pod_ips, keeping only addresses that are really configured in the netns."""
        result = self.pod_ips(pod_id)
        attachment = self._known.get(pod_id)
        if result is None or attachment is None:
            return None
        there = (await self._reader(pod_id, Path(attachment.netns))).address_set()
        wanted = [a for a in [result.ip, *result.additional_ips] if a in there]
        if not wanted:
            return None
        result.ip, result.additional_ips = wanted[0], wanted[1:]
        return result

    async def pod_interface_stats(self, pod_id: str, netns: Path) -> dict[str, tuple[int, int]]:
        """rx/tx bytes per interface inside the pod's netns (one netlink dump; no thread, no fork)."""
        return (await self._reader(pod_id, netns)).interface_stats()

    async def _reader(self, pod_id: str, netns: Path) -> NetnsReader:
        reader = self._readers.get(pod_id)
        if reader is not None and reader.netns == netns:
            return reader
        if reader is not None:
            reader.close()
        # entering the namespace takes a thread once; the socket then serves every later read
        reader = await asyncio.to_thread(NetnsReader, netns)
        stale = self._readers.get(pod_id)
        if stale is not None and stale is not reader:
            stale.close()
        self._readers[pod_id] = reader
        return reader

    def close_reader(self, pod_id: str) -> None:
        """The pod's network is going: its socket must not keep the namespace alive."""
        reader = self._readers.pop(pod_id, None)
        if reader is not None:
            reader.close()

    # ---- garbage collection ------------------------------------------------------------

    async def gc(self, valid_pod_ids: set[str]) -> None:
        """DEL the attachments of pods that no longer exist, then CNI GC (1.1.0) per network."""
        # stand-in namespaces outlive their DEL only if the daemon died during it
        for stale in await asyncio.to_thread(netns_ops.stand_in_pins, self.run_dir):
            await asyncio.to_thread(netns_ops.remove_pinned_netns, stale)
        for pod_id in self._cache.pod_ids():
            if pod_id in valid_pod_ids:
                continue
            try:
                await self.teardown(pod_id, None)
                log.info("pod %s: released stale CNI attachment", pod_id)
            except Internal as exc:
                log.warning("pod %s: releasing stale CNI attachment failed: %s", pod_id, exc)
        loaded = self._loaded
        if loaded is None:
            return
        for network in loaded.networks:
            if network.disable_gc or not version_at_least(network.cni_version, "1.1.0"):
                continue
            await self._plugin_gc(network, loaded)

    async def _plugin_gc(self, network: NetworkConfList, loaded: LoadedNetworks) -> None:
        valid: list[dict[str, str]] = []
        for pod_id in self._cache.pod_ids():
            try:
                attachment = self._cache.load(pod_id)
            except ValueError:
                continue
            if attachment is not None and attachment.network.name == network.name:
                valid.append({"containerID": pod_id, "ifname": attachment.ifname})
        # libcni also sends the misspelled key; plugins written against it read that one
        extra = {"cni.dev/valid-attachments": valid, "cni.dev/attachments": valid}
        for index, kind in enumerate(network.plugin_types):
            try:
                await exec_plugin(
                    loaded.binaries[kind],
                    PluginEnv("GC"),
                    plugin_stdin(network, index, prev_result=None, runtime_config=None, extra=extra),
                    cni_path=self._cni_path,
                    time_limit=self.plugin_timeout,
                )
            except CniPluginError as exc:
                log.warning("CNI GC of network %s: %s", network.name, exc)
