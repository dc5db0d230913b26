"""The configured runtime handlers, each as an OciRuntime, looked up by CRI handler name."""

from __future__ import annotations

from pathlib import Path

from cri_py.config.model import Config
from cri_py.errors import InvalidArgument
from cri_py.oci.runtime import OciRuntime


class RuntimeSet:
    def __init__(self, config: Config) -> None:
        self.default = config.default_runtime
        self._runtimes = {
            name: OciRuntime(
                handler, conmon=config.conmon, run_dir=config.run_dir, log_level=config.log_level
            )
            for name, handler in config.runtimes.items()
        }

    def get(self, name: str) -> OciRuntime:
        runtime = self._runtimes.get(name or self.default)
        if runtime is None:
            raise InvalidArgument(f"runtime handler {name!r} is not configured")
        if not Path(runtime.binary).exists():
            raise InvalidArgument(f"runtime handler {name!r}: {runtime.binary} does not exist")
        return runtime

    def find(self, name: str) -> OciRuntime | None:
        """The handler's runtime if it is configured and its binary is installed."""
        runtime = self._runtimes.get(name or self.default)
        return runtime if runtime is not None and Path(runtime.binary).exists() else None

    def names(self) -> list[str]:
        return list(self._runtimes)
