"""VM runtimes through containerd's shim v2 API (Kata Containers' containerd-shim-kata-v2).

- `ttrpc`: the RPC protocol the shims speak; `task`: starting a shim and its Task service.
- `io`: the processes' stdio through FIFOs, written to the CRI log by the daemon.
- `runtime`: `ShimRuntime`, the `ContainerRuntime` of a `type: vm` handler.
"""
