"""The CRI streaming server: exec, attach and port-forward over SPDY/3.1 and WebSocket.

Layout (one job per module):
- `spdy`: SPDY/3.1 frames and header compression, no I/O; `spdy_session`: asyncio streams on it.
- `websocket`: Kubernetes channel framing on the `websockets` sans-I/O protocol.
- `server`: HTTP/1.1 (h11) upgrade, token lookup, dispatch; `tokens`: the single-use cache.
- `remotecommand`, `portforward`: session logic, transport-neutral (`channels`, `inbox`).
- `backend`: the seam to the rest of the daemon (targets in, live byte streams out);
  `runtime_backend` hands exec and attach to the container's runtime (cri_py.oci), and
  dials port-forwards with `netns_dial`.
"""
