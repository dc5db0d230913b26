"""Assemble the two CRI services and wrap every RPC once: readiness, logging, error mapping.

Handlers live in per-area mixins (`status.py`, `sandbox.py`, `container.py`, `image.py`,
`streaming.py`, `list_streams.py`, `events.py`, `metrics.py`); this module composes them and installs the wrapper, so no handler maps
errors or logs on its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import grpc

from cri_py.api import api_pb2, api_pb2_grpc
from cri_py.errors import CriError, Unavailable
from cri_py.events import Timing
from cri_py.server.container import ContainerHandlers
from cri_py.server.errors import disk_full, status_code_for
from cri_py.server.events import EventHandlers
from cri_py.server.image import ImageHandlers
from cri_py.server.list_streams import ListStreamHandlers
from cri_py.server.metrics import MetricsHandlers
from cri_py.server.sandbox import SandboxHandlers
from cri_py.server.status import StatusHandlers
from cri_py.server.streaming import StreamingHandlers

if TYPE_CHECKING:
    from cri_py.daemon import Daemon
    from cri_py.services import Services

log = logging.getLogger("cri_py.rpc")

# CRI-O allows 80 MiB each way so List RPCs on a dense node fit.
MAX_MESSAGE_BYTES = 80 * 1024 * 1024


class RuntimeServicer(
    StatusHandlers,
    SandboxHandlers,
    ContainerHandlers,
    StreamingHandlers,
    ListStreamHandlers,
    EventHandlers,
    MetricsHandlers,
    api_pb2_grpc.RuntimeServiceServicer,
):
    def __init__(self, daemon: Daemon, services: Services) -> None:
        self.daemon = daemon
        self.services = services


class ImageServicer(ImageHandlers, api_pb2_grpc.ImageServiceServicer):
    def __init__(self, daemon: Daemon, services: Services) -> None:
        self.daemon = daemon
        self.services = services


def _request_ids(request: Any) -> dict[str, str]:
    """The ids a request names, for the log line."""
    ids: dict[str, str] = {}
    for field in ("pod_sandbox_id", "container_id"):
        value = getattr(request, field, "")
        if isinstance(value, str) and value:
            ids[field.removesuffix("_id")] = value[:13]
    return ids


def _unimplemented(rpc: str) -> Callable[..., Any]:
    async def handler(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        log.debug("rpc done", extra={"rpc": rpc, "code": "UNIMPLEMENTED"})
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{rpc} is not implemented by cri-py")

    return handler


def _wrap_unary(rpc: str, func: Callable[..., Any], daemon: Daemon) -> Callable[..., Any]:
    async def handler(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        started = time.monotonic()
        code = "OK"
        try:
            if not daemon.ready:
                raise Unavailable("cri-py is starting up")
            return await func(request, context)
        except (CriError, TimeoutError) as exc:
            status = status_code_for(exc)
            code = status.name
            await context.abort(status, str(exc) or f"{rpc}: {type(exc).__name__}")
        except Exception as exc:
            if isinstance(exc, grpc.aio.AbortError):
                raise
            if disk_full(exc):
                code = "RESOURCE_EXHAUSTED"
                log.warning(
                    "rpc failed: no space left",
                    extra={"rpc": rpc, **_request_ids(request), "error": str(exc)},
                )
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"{rpc}: no space left: {exc}")
            code = "INTERNAL"
            log.exception("rpc failed", extra={"rpc": rpc, **_request_ids(request)})
            await context.abort(grpc.StatusCode.INTERNAL, f"{rpc}: {type(exc).__name__}: {exc}")
        except BaseException:
            code = "CANCELLED"
            raise
        finally:
            elapsed = time.monotonic() - started
            _observe(daemon, rpc, "unary", code, elapsed)
            log.debug(
                "rpc done",
                extra={
                    "rpc": rpc,
                    **_request_ids(request),
                    "code": code,
                    "duration_ms": round(elapsed * 1000, 3),
                },
            )

    return handler


def _observe(daemon: Daemon, rpc: str, kind: str, code: str, seconds: float) -> None:
    """Publish the RPC's outcome on the bus (metrics count and time it)."""
    timings = daemon.events.timings
    if timings.subscribers:
        service, _, method = rpc.partition("/")
        timings.publish(Timing("grpc", method, f"{service} {kind}", seconds, "" if code == "OK" else code))


def _wrap_stream(rpc: str, func: Callable[..., AsyncIterator[Any]], daemon: Daemon) -> Callable[..., Any]:
    async def handler(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        started = time.monotonic()
        code = "OK"
        try:
            if not daemon.ready:
                raise Unavailable("cri-py is starting up")
            async for item in func(request, context):
                yield item
        except (CriError, TimeoutError) as exc:
            status = status_code_for(exc)
            code = status.name
            await context.abort(status, str(exc) or f"{rpc}: {type(exc).__name__}")
        except Exception as exc:
            if isinstance(exc, grpc.aio.AbortError):
                raise
            code = "INTERNAL"
            log.exception("rpc failed", extra={"rpc": rpc})
            await context.abort(grpc.StatusCode.INTERNAL, f"{rpc}: {type(exc).__name__}: {exc}")
        except BaseException:
            code = "CANCELLED"
            raise
        finally:
            _observe(daemon, rpc, "server_stream", code, time.monotonic() - started)

    return handler


def _serialize(response: Any) -> bytes:
    """Responses are messages, or bytes a service keeps serialized (cached List answers)."""
    return response if isinstance(response, bytes) else bytes(response.SerializeToString())


def _handlers(servicer: Any, base: type, service_name: str, daemon: Daemon) -> grpc.GenericRpcHandler:
    """The service's method handlers, each RPC wrapped once; responses may be pre-serialized."""
    service = api_pb2.DESCRIPTOR.services_by_name[service_name]
    handlers = {}
    for method in service.methods:
        rpc = f"{service_name}/{method.name}"
        implemented = getattr(type(servicer), method.name) is not getattr(base, method.name)
        request_type = getattr(api_pb2, method.input_type.name)
        if not implemented:
            behaviour = _unimplemented(rpc)
        elif method.server_streaming:
            behaviour = _wrap_stream(rpc, getattr(servicer, method.name), daemon)
        else:
            behaviour = _wrap_unary(rpc, getattr(servicer, method.name), daemon)
        make = (
            grpc.unary_stream_rpc_method_handler
            if method.server_streaming
            else grpc.unary_unary_rpc_method_handler
        )
        handlers[method.name] = make(
            behaviour, request_deserializer=request_type.FromString, response_serializer=_serialize
        )
    return grpc.method_handlers_generic_handler(service.full_name, handlers)


def build_server(daemon: Daemon, services: Services) -> grpc.aio.Server:
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ]
    )
    server.add_generic_rpc_handlers(
        (
            _handlers(
                RuntimeServicer(daemon, services),
                api_pb2_grpc.RuntimeServiceServicer,
                "RuntimeService",
                daemon,
            ),
            _handlers(
                ImageServicer(daemon, services), api_pb2_grpc.ImageServiceServicer, "ImageService", daemon
            ),
        )
    )
    return server
