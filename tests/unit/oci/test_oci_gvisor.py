"""gvisor_monitor.sh and GvisorRuntime's side of it, against a stand-in runsc that records its
calls: what conmon's create becomes, how StartContainer reaches the holder, what a failed
start reports, and how a never-started container is ended."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import pytest

from cri_py.config.model import RuntimeHandler
from cri_py.errors import Internal
from cri_py.oci import exits
from cri_py.oci.gvisor import GvisorRuntime

CID = "c" * 64

FAKE_RUNSC = r"""#!/bin/sh
# records each call; behaves as runsc would for a container joining a sandbox
echo "$*" >> "$CALLS"
for arg do last=$arg; done
case " $* " in
*" create "*)
    while [ $# -gt 0 ]; do [ "$1" = --pid-file ] && echo 4242 > "$2"; shift; done ;;
*" start "*)
    if [ -e "$FAIL_START" ]; then
        for arg do case $arg in --log=*) log=${arg#--log=} ;; esac; done
        echo '{"msg":"FATAL ERROR: starting container: exec: \"nope\": not found","level":"error"}' > "$log"
        echo "starting container: exec: nope: not found" >&2
        exit 128
    fi
    echo "hello from the container" ;;
*" wait "*)
    while [ ! -e "$EXIT_CODE" ]; do sleep 0.01; done
    echo "{\"id\":\"$last\",\"exitStatus\":$(cat "$EXIT_CODE")}" ;;
*" state "*)
    echo '{"status": "stopped"}' ;;
esac
"""


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    fake = tmp_path / "runsc"
    fake.write_text(FAKE_RUNSC)
    fake.chmod(0o755)
    paths = {
        "fake": fake,
        "calls": tmp_path / "calls",
        "fail_start": tmp_path / "fail-start",
        "exit_code": tmp_path / "exit-code",
        "run": tmp_path / "run",
        "bundle": tmp_path / "bundle",
        "stdout": tmp_path / "stdout",
    }
    paths["bundle"].mkdir()
    monkeypatch.setenv("CALLS", str(paths["calls"]))
    monkeypatch.setenv("FAIL_START", str(paths["fail_start"]))
    monkeypatch.setenv("EXIT_CODE", str(paths["exit_code"]))
    return paths


def _runtime(world: dict[str, Path]) -> GvisorRuntime:
    handler = RuntimeHandler(
        name="runsc", path=world["fake"], type="gvisor", runtime_args=("--network=host",)
    )
    return GvisorRuntime(handler, conmon=Path("/usr/bin/conmon"), run_dir=world["run"])


def _conmon_create(world: dict[str, Path], runtime: GvisorRuntime) -> int:
    """Run the create as conmon would: `<runtime> <runtime args> create ...`, our stdio its pipes."""
    program, args = runtime._conmon_runtime(CID)
    pid_file = world["bundle"] / "pidfile"
    with open(world["stdout"], "wb") as out:
        done = subprocess.run(
            [program, *args, "create", "--bundle", str(world["bundle"]), "--pid-file", str(pid_file), CID],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
            timeout=30,
        )
    assert done.returncode == 0
    return int(pid_file.read_text())


def _calls(world: dict[str, Path]) -> list[str]:
    return world["calls"].read_text().splitlines()


def _wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 10
    while exits.process_alive(pid):
        assert time.monotonic() < deadline, f"holder {pid} still runs"
        time.sleep(0.01)


def test_conmon_watches_a_holder_and_runsc_gets_the_same_create(world: dict[str, Path]) -> None:
    runtime = _runtime(world)
    assert runtime._conmon_runtime(CID)[0] == "/bin/sh"
    holder = _conmon_create(world, runtime)
    state = runtime.monitor_dir(CID)
    assert holder != 4242 and exits.process_alive(holder)
    assert (state / "holder").read_text().strip() == str(holder)
    # runsc saw conmon's create with its own pid file before the id; the sandbox pid is kept
    root = f"--root={runtime.root}"
    assert _calls(world) == [
        f"{root} --network=host create --bundle {world['bundle']} --pid-file {state}/runsc.pid {CID}"
    ]
    assert (state / "runsc.pid").read_text().strip() == "4242"

    asyncio.run(runtime.start(CID))
    assert _calls(world)[1] == f"{root} --network=host --log={state}/start.log --log-format=json start {CID}"
    # runsc start ran with the holder's stdio, which are conmon's: the container's output
    assert world["stdout"].read_text() == "hello from the container\n"
    world["exit_code"].write_text("7")
    _wait_gone(holder)
    assert _calls(world)[2] == f"{root} --network=host wait {CID}"


def test_a_failed_start_says_why(world: dict[str, Path]) -> None:
    runtime = _runtime(world)
    world["fail_start"].touch()
    holder = _conmon_create(world, runtime)
    with pytest.raises(Internal, match='starting container: exec: "nope": not found'):
        asyncio.run(runtime.start(CID))
    _wait_gone(holder)


def test_a_never_started_container_ends_with_its_holder(world: dict[str, Path]) -> None:
    runtime = _runtime(world)
    holder = _conmon_create(world, runtime)
    # runsc cannot signal a created container; the holder goes (conmon then records 137)
    asyncio.run(runtime.kill(CID, 15))
    _wait_gone(holder)
    assert all(" kill " not in call for call in _calls(world))
    runtime.forget(CID)
    assert not runtime.monitor_dir(CID).exists()


def test_global_arguments_with_values_stay_before_the_subcommand(world: dict[str, Path]) -> None:
    handler = RuntimeHandler(
        name="runsc", path=world["fake"], type="gvisor", runtime_args=("--platform", "ptrace")
    )
    runtime = GvisorRuntime(handler, conmon=Path("/usr/bin/conmon"), run_dir=world["run"])
    holder = _conmon_create(world, runtime)
    asyncio.run(runtime.start(CID))
    assert _calls(world)[1].startswith(f"--root={runtime.root} --platform ptrace --log=")
    world["exit_code"].write_text("0")
    _wait_gone(holder)
