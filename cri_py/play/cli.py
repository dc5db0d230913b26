"""`cri-py play FILE [--endpoint unix:///...] [--watch] [--down] [--status] [--volume-root DIR]`."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import os
import signal
import sys
from typing import Any

import grpc
from google.protobuf import text_format

from cri_py.api import api_pb2
from cri_py.errors import CriError
from cri_py.play import downward, translate
from cri_py.play import status as status_table
from cri_py.play.admission import admit, ignored_fields
from cri_py.play.client import DEFAULT_ENDPOINT, CriClient
from cri_py.play.defaults import apply_defaults
from cri_py.play.manifest import load_file
from cri_py.play.node import probe_node
from cri_py.play.runner import Player, PodFailed, StartFailed, sidecar_names
from cri_py.play.translate import ImageFacts, PlayContext
from cri_py.play.watch import watch

DEFAULT_VOLUME_ROOT = "/var/lib/cri-py-play"
DEFAULT_POD_LOGS_DIR = "/var/log/pods"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cri-py play",
        description="Run Kubernetes Pod manifests (also the pod template of a Deployment, StatefulSet, "
        "DaemonSet or Job) through a CRI endpoint, translated the way kubelet does for static pods. "
        "envFrom, ConfigMap/Secret/projected volumes and user namespaces are out of scope.",
    )
    parser.add_argument("file", metavar="FILE", help="YAML manifest with one or more documents, - for stdin")
    parser.add_argument(
        "--endpoint",
        default=os.environ.get("CONTAINER_RUNTIME_ENDPOINT", DEFAULT_ENDPOINT),
        help=f"CRI endpoint, unix:///path (default $CONTAINER_RUNTIME_ENDPOINT or {DEFAULT_ENDPOINT})",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--watch", action="store_true", help="keep supervising: restarts, back-off, probes")
    mode.add_argument("--down", action="store_true", help="stop and remove what the manifest created")
    mode.add_argument("--status", action="store_true", help="show pods and containers as a table")
    mode.add_argument("--dry-run", action="store_true", help="print the CRI messages kubelet would send")
    parser.add_argument(
        "--volume-root",
        default=DEFAULT_VOLUME_ROOT,
        help=f"kubelet's root dir for pod volumes (default {DEFAULT_VOLUME_ROOT})",
    )
    parser.add_argument(
        "--pod-logs-dir",
        default=DEFAULT_POD_LOGS_DIR,
        help=f"kubelet's podLogsDir (default {DEFAULT_POD_LOGS_DIR})",
    )
    parser.add_argument(
        "--grace-period",
        type=int,
        default=None,
        help="seconds to wait on stop (default: the pod's terminationGracePeriodSeconds)",
    )
    parser.add_argument(
        "--backoff", type=float, default=10.0, help="initial crash-loop back-off in seconds (kubelet: 10)"
    )
    parser.add_argument(
        "--allowed-unsafe-sysctls",
        action="append",
        default=[],
        metavar="PATTERN",
        help="unsafe sysctls pods may set, e.g. 'kernel.msg*' (kubelet's flag of that name; repeatable)",
    )
    parser.add_argument(
        "--cluster-dns", action="append", default=[], help="cluster DNS server IP (repeatable)"
    )
    parser.add_argument(
        "--cluster-domain", default="cluster.local", help="cluster domain (default cluster.local)"
    )
    parser.add_argument(
        "--resolv-conf", default="/etc/resolv.conf", help="resolver config for pods (kubelet's --resolv-conf)"
    )
    return parser


def _say(text: str) -> None:
    print(text, flush=True)


async def _cgroup_driver(cri: CriClient) -> str:
    try:
        resp = await cri.runtime.RuntimeConfig(api_pb2.RuntimeConfigRequest())
    except grpc.aio.AioRpcError:
        return "cgroupfs"  # runtimes without RuntimeConfig predate the systemd default
    return "systemd" if resp.linux.cgroup_driver == api_pb2.CgroupDriver.SYSTEMD else "cgroupfs"


def _precheck(pods: list[Any], ctx: PlayContext, unsafe_sysctls: tuple[str, ...]) -> None:
    """Translate everything once before touching the runtime, so manifest errors come first."""
    probe_image = ImageFacts(ref="precheck", uid=0, username="")
    for pod in pods:
        admit(pod, unsafe_sysctls)
        for field in ignored_fields(pod):
            print(f"warning: {pod.metadata.namespace}/{pod.metadata.name}: ignoring {field}", file=sys.stderr)
        translate.sandbox_config(pod, ctx)
        for container in [*(pod.spec.init_containers or []), *pod.spec.containers]:
            translate.container_config(
                pod,
                container,
                ctx,
                restart_count=0,
                image=probe_image,
                pod_ips=("192.0.2.1",),
                termination_log=None,
            )
        for index, volume in enumerate(pod.spec.volumes or []):
            translate.volume_host_path(pod, ctx, volume, f"spec.volumes[{index}]")
            if volume.downward_api is not None:
                downward.payload(pod, volume, f"spec.volumes[{index}]", ctx.node)


async def _run(args: argparse.Namespace, pods: list[Any], ctx: PlayContext) -> int:
    async with CriClient(args.endpoint) as cri:
        await cri.runtime.Version(api_pb2.VersionRequest(), timeout=10)
        ctx = dataclasses.replace(ctx, cgroup_driver=await _cgroup_driver(cri))
        player = Player(cri, ctx, _say)
        if args.down:
            for pod in pods:
                meta = pod.metadata
                grace = args.grace_period
                if grace is None:
                    grace = int(pod.spec.termination_grace_period_seconds)
                if not await player.down(meta.namespace, meta.name, grace, sidecar_names(pod)):
                    _say(f"pod {meta.namespace}/{meta.name} not found")
            return 0
        if args.status:
            rows = []
            for pod in pods:
                rows.extend(await status_table.pod_rows(player, pod.metadata.namespace, pod.metadata.name))
            _say(status_table.format_table(rows))
            return 0
        if args.watch:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            task = asyncio.create_task(watch(player, pods, args.backoff, stop))
            stop_waiter = asyncio.create_task(stop.wait())
            await asyncio.wait({task, stop_waiter}, return_when=asyncio.FIRST_COMPLETED)
            stop_waiter.cancel()
            if not task.done():
                # interrupted while pods were still coming up: stop there, leave what runs
                task.cancel()
            try:
                return await task
            except asyncio.CancelledError:
                return 0
        failed = False
        for pod in pods:
            try:
                await player.up(pod)
            except PodFailed as exc:
                _say(f"error: {exc}")
                failed = True
        rows = []
        for pod in pods:
            rows.extend(await status_table.pod_rows(player, pod.metadata.namespace, pod.metadata.name))
        _say(status_table.format_table(rows))
        return 1 if failed else 0


def _dry_run(pods: list[Any], ctx: PlayContext) -> int:
    image = ImageFacts(ref="<image ref>", uid=0, username="")
    for pod in pods:
        config = translate.sandbox_config(pod, ctx)
        _say(f"# RunPodSandbox (runtime_handler {translate.runtime_handler(pod)!r})")
        _say(text_format.MessageToString(config))
        for container in [*(pod.spec.init_containers or []), *pod.spec.containers]:
            _say(f"# CreateContainer {container.name}")
            _say(
                text_format.MessageToString(
                    translate.container_config(
                        pod,
                        container,
                        ctx,
                        restart_count=0,
                        image=image,
                        pod_ips=("<pod ip>",),
                        termination_log=translate.termination_log_path(ctx, pod, container, "<random id>"),
                    )
                )
            )
    return 0


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    node = probe_node(args.resolv_conf, args.cluster_domain, tuple(args.cluster_dns))
    seen = datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")
    ctx = PlayContext(
        node=node,
        root_dir=os.path.abspath(args.volume_root),
        pod_logs_dir=os.path.abspath(args.pod_logs_dir),
        seen=seen,
    )
    try:
        pods = [played.pod for played in load_file(args.file, node.name)]
        for pod in pods:
            apply_defaults(pod)
        if not args.down and not args.status:
            _precheck(pods, ctx, tuple(args.allowed_unsafe_sysctls))
        if args.dry_run:
            return _dry_run(pods, ctx)
        return asyncio.run(_run(args, pods, ctx))
    except StartFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(f"what was created stays; `cri-py play --down {args.file}` removes it", file=sys.stderr)
        return 1
    except CriError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except grpc.aio.AioRpcError as exc:
        print(f"error: {args.endpoint}: {exc.code().name}: {exc.details()}", file=sys.stderr)
        if not (args.down or args.status):
            print(f"what was created stays; `cri-py play --down {args.file}` removes it", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `cri-py play --dry-run x.yaml | head`: the reader left, nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
