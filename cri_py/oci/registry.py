"""The configured runtime handlers, each as a `ContainerRuntime`, looked up by CRI handler name.

The handler's `type` picks the implementation: `oci` is `OciRuntime` (a runc-compatible
binary under conmon), `gvisor` is `GvisorRuntime` (runsc, a pod one sandbox), `vm` is
`ShimRuntime` (cri_py/shim: a containerd shim v2 binary such as Kata's
containerd-shim-kata-v2, a pod one VM).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from cri_py.config.model import Config, RuntimeHandler
from cri_py.errors import InvalidArgument
from cri_py.oci.gvisor import GvisorRuntime
from cri_py.oci.interface import ContainerRuntime
from cri_py.oci.runtime import OciRuntime

if TYPE_CHECKING:
    from cri_py.events import EventBus

# (handler, config, the bus call latencies are published on or None)
RuntimeFactory = Callable[[RuntimeHandler, Config, "EventBus | None"], ContainerRuntime]


def _oci(handler: RuntimeHandler, config: Config, events: EventBus | None) -> ContainerRuntime:
    return OciRuntime(
        handler,
        conmon=config.conmon,
        run_dir=config.run_dir,
        log_level=config.log_level,
        cgroup_driver=config.cgroup_driver,
        events=events,
    )


def _gvisor(handler: RuntimeHandler, config: Config, events: EventBus | None) -> ContainerRuntime:
    return GvisorRuntime(
        handler,
        conmon=config.conmon,
        run_dir=config.run_dir,
        log_level=config.log_level,
        cgroup_driver=config.cgroup_driver,
        events=events,
    )


def _vm(handler: RuntimeHandler, config: Config, events: EventBus | None) -> ContainerRuntime:
    from cri_py.shim.runtime import ShimRuntime

    return ShimRuntime(handler, run_dir=config.run_dir, cgroup_driver=config.cgroup_driver, events=events)


IMPLEMENTATIONS: dict[str, RuntimeFactory] = {"oci": _oci, "gvisor": _gvisor, "vm": _vm}


class RuntimeSet:
    def __init__(self, config: Config, events: EventBus | None = None) -> None:
        self.default = config.default_runtime
        self._runtimes: dict[str, ContainerRuntime] = {}
        for name, handler in config.runtimes.items():
            factory = IMPLEMENTATIONS.get(handler.type)
            if factory is None:
                raise InvalidArgument(f"runtime handler {name!r}: unknown type {handler.type!r}")
            self._runtimes[name] = factory(handler, config, events)

    def get(self, name: str) -> ContainerRuntime:
        runtime = self._runtimes.get(name or self.default)
        if runtime is None:
            raise InvalidArgument(f"runtime handler {name!r} is not configured")
        if not Path(runtime.handler.path).exists():
            raise InvalidArgument(f"runtime handler {name!r}: {runtime.handler.path} does not exist")
        return runtime

    def find(self, name: str) -> ContainerRuntime | None:
        """The handler's runtime if it is configured and its binary is installed."""
        runtime = self._runtimes.get(name or self.default)
        return runtime if runtime is not None and Path(runtime.handler.path).exists() else None

    def names(self) -> list[str]:
        return list(self._runtimes)
