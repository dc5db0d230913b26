"""Prototype fixes patched into cri-py at start-up, measured before anyone edits the daemon.

    hack/bench --compare --cri-py-wrapper hack/benchlib/prototypes.py
    PROTO=exec,list hack/bench --spans --cri-py-wrapper hack/benchlib/prototypes.py

PROTO (comma-separated, default the two still open: portmap,nopyroute2) picks them; docs/benchmarks.md has what each
measured. A measurement aid only: it patches private functions of cri_py/oci, cri_py/network,
cri_py/server and cri_py/store as they were on 2026-11-27 and breaks when those change; the
real fixes belong in those modules (see the findings in docs/benchmarks.md).

- exec:       (done in the daemon by 101b277) ExecSync runs `runc exec --process` directly (pipes, timeout by the pid file) instead
              of `conmon --exec --sync` with a temp CRI log file.
- list:       (done in the daemon by 792a53b) ListPodSandbox/ListContainers answer from the last built response until a record
              changes (RecordTable.put/delete bump a generation).
- portmap:    CNI DEL runs the plugins ADD ran (ADD skips portmap when the pod maps no ports).
- nopyroute2: loopback up with one SIOCSIFFLAGS ioctl instead of importing pyroute2.
- trim:       malloc_trim(0) every 2 s (measured: no effect on idle RSS).
"""

# ruff: noqa
# mypy: ignore-errors
import asyncio, contextlib, json, os, signal, sys, tempfile
from pathlib import Path

sys.argv = ["cri-py", *sys.argv[2:]]
if os.environ.get("SPAN_OUT"):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import spantrace

    spantrace.install()
which = set(filter(None, os.environ.get("PROTO", "portmap,nopyroute2").split(",")))

if "trim" in which:
    # give freed heap back to the kernel now and then (glibc keeps it otherwise)
    import ctypes, threading, time as _time

    _libc = ctypes.CDLL("libc.so.6")

    def _trim():
        while True:
            _time.sleep(2)
            _libc.malloc_trim(0)

    threading.Thread(target=_trim, daemon=True, name="malloc-trim").start()

if "nopyroute2" in which:
    # loopback up with one ioctl instead of pyroute2's netlink stack (12 MiB of imports)
    import fcntl, socket, struct, types

    SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1

    class IPRoute:
        def __init__(self):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.close()

        def close(self):
            self.sock.close()

        def link(self, cmd, index=None, state=None, **kw):
            assert cmd == "set" and state == "up", (cmd, kw)
            name = socket.if_indextoname(index).encode()
            flags = struct.unpack("16sH", fcntl.ioctl(self.sock, SIOCGIFFLAGS, struct.pack("16sH", name, 0)))[
                1
            ]
            fcntl.ioctl(self.sock, SIOCSIFFLAGS, struct.pack("16sH", name, flags | IFF_UP))

    stub = types.ModuleType("pyroute2")
    stub.IPRoute = IPRoute
    sys.modules["pyroute2"] = stub

if "exec" in which:
    from cri_py.oci import runtime as rt

    original = rt.OciRuntime.exec_sync

    async def exec_sync(self, cid, process, limit_s, *, tty=False):
        if tty:
            return await original(self, cid, process, limit_s, tty=tty)
        self.prepare_dirs()
        with tempfile.TemporaryDirectory(prefix="exec-", dir=self.exits_dir.parent) as tmp:
            spec = Path(tmp) / "process.json"
            spec.write_text(json.dumps(process))
            pid_file = Path(tmp) / "pid"
            proc = await asyncio.create_subprocess_exec(
                self.binary,
                *self.global_args(),
                "exec",
                "--process",
                str(spec),
                "--pid-file",
                str(pid_file),
                cid,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
            try:
                out, err = await asyncio.wait_for(proc.communicate(), limit_s if limit_s > 0 else None)
            except asyncio.TimeoutError:
                with contextlib.suppress(OSError, ValueError):
                    os.kill(int(pid_file.read_text()), signal.SIGKILL)
                await proc.wait()
                return rt.ExecResult(-1, b"", b"command timed out", timed_out=True)
            return rt.ExecResult(proc.returncode, out[: rt.EXEC_OUTPUT_CAP], err[: rt.EXEC_OUTPUT_CAP])

    rt.OciRuntime.exec_sync = exec_sync

if "list" in which:
    # the whole List response is kept until a record changes (every state change goes through put/delete)
    from cri_py.store import table as st
    from cri_py.server import sandbox as ssb, container as sct

    generation = [0]
    for name in ("put", "delete"):
        orig = getattr(st.RecordTable, name)

        def bump(self, *a, _orig=orig, **k):
            generation[0] += 1
            return _orig(self, *a, **k)

        setattr(st.RecordTable, name, bump)
    for cls, rpc in ((ssb.SandboxHandlers, "ListPodSandbox"), (sct.ContainerHandlers, "ListContainers")):
        orig_rpc = getattr(cls, rpc)
        cache: dict = {}

        async def cached(self, request, context, _orig=orig_rpc, _cache=cache):
            key = (generation[0], request.SerializeToString())
            hit = _cache.get(key)
            if hit is None:
                _cache.clear()
                hit = _cache[key] = await _orig(self, request, context)
            return hit

        setattr(cls, rpc, cached)

if "portmap" in which:
    from cri_py.network import manager as nm

    async def _delete(self, attachment, netns):
        # DEL runs exactly the plugins ADD ran (ADD skips portmap without port mappings)
        network = attachment.network
        prev = attachment.result if nm.version_at_least(network.cni_version, "0.4.0") else None
        first_error = None
        for index in reversed(self._plugins_to_run(network, attachment.capability_args)):
            try:
                await self._invoke(attachment, index, "DEL", netns, prev)
            except nm.CniPluginError as exc:
                first_error = first_error or exc
        if first_error is not None:
            raise first_error

    nm.NetworkManager._delete = _delete

from cri_py.cli import main

raise SystemExit(main())
