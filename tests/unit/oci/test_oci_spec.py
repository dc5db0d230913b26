"""The OCI spec built from CRI requests: command, env, user, security, namespaces, cgroups."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cri_py.api import api_pb2
from cri_py.errors import InvalidArgument
from cri_py.oci import security
from cri_py.oci.cgroups import clamp_oom_score_adj, container_cgroups_path, hugetlb_available, oci_resources
from cri_py.oci.devices import host_devices
from cri_py.oci.spec import (
    HostFacts,
    PodContext,
    command_line,
    container_spec,
    create_missing_mount_sources,
    cri_mounts,
    environment,
    infra_spec,
    resolve_signal,
)

CID = "c" * 64


def _pod(tmp_path: Path, **kw: object) -> PodContext:
    values: dict[str, object] = dict(
        id="p" * 64,
        hostname="web-0",
        cgroup_parent="/kubepods/pod1",
        netns_path="/run/netns/x",
        ipc_path="/run/ipc",
        uts_path="/run/uts",
        pid_path=None,
        host_pid=False,
        resolv_conf=tmp_path / "resolv.conf",
        hosts=tmp_path / "hosts",
        hostname_file=tmp_path / "hostname",
        shm_path=tmp_path / "shm",
    )
    values.update(kw)
    return PodContext(**values)  # type: ignore[arg-type]


def _rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\nweb:x:1000:1000::/home/web:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\nweb:x:1000:\nextra:x:2000:web\n")
    return root


def _spec(
    tmp_path: Path, config: api_pb2.ContainerConfig, image: dict[str, object] | None = None, **pod: object
):  # type: ignore[no-untyped-def]
    return container_spec(
        cid=CID,
        config=config,
        image_config={"config": image or {"Cmd": ["/bin/sh"]}},
        rootfs=_rootfs(tmp_path),
        pod=_pod(tmp_path, **pod),
        host=HostFacts("cgroupfs", 0),
    )


def test_command_follows_kubelet_rules() -> None:
    image = {"Entrypoint": ["/entry"], "Cmd": ["default"]}
    assert command_line(api_pb2.ContainerConfig(), image) == ["/entry", "default"]
    assert command_line(api_pb2.ContainerConfig(args=["a"]), image) == ["/entry", "a"]
    assert command_line(api_pb2.ContainerConfig(command=["/bin/x"]), image) == ["/bin/x"]
    assert command_line(api_pb2.ContainerConfig(command=["/bin/x"], args=["y"]), image) == ["/bin/x", "y"]
    with pytest.raises(InvalidArgument):
        command_line(api_pb2.ContainerConfig(), {})


def test_environment_image_then_config() -> None:
    cfg = api_pb2.ContainerConfig(envs=[api_pb2.KeyValue(key="A", value="2")], tty=True)
    env = environment(cfg, {"Env": ["A=1", "B=x=y"]}, "host")
    assert "A=2" in env and "B=x=y" in env and "HOSTNAME=host" in env and "TERM=xterm" in env
    assert any(e.startswith("PATH=") for e in env)


def test_default_spec_is_confined(tmp_path: Path) -> None:
    spec = _spec(tmp_path, api_pb2.ContainerConfig(command=["/bin/true"]))
    proc = spec["process"]
    assert proc["user"] == {"uid": 0, "gid": 0, "additionalGids": [0], "username": "root"}
    assert sorted(proc["capabilities"]["bounding"]) == sorted(security.DEFAULT_CAPABILITIES)
    linux = spec["linux"]
    assert linux["cgroupsPath"] == f"/kubepods/pod1/cri-py-{CID}"
    assert "/proc/kcore" in linux["maskedPaths"] and "/proc/sys" in linux["readonlyPaths"]
    assert "seccomp" not in linux  # no profile asked for: unconfined, as containerd does
    types = {n["type"]: n.get("path") for n in linux["namespaces"]}
    assert types == {
        "mount": None,
        "network": "/run/netns/x",
        "ipc": "/run/ipc",
        "uts": "/run/uts",
        "pid": None,
    }
    dests = [m["destination"] for m in spec["mounts"]]
    assert {"/etc/hosts", "/etc/resolv.conf", "/etc/hostname", "/dev/shm"} <= set(dests)
    assert spec["hostname"] == "web-0"
    assert spec["annotations"]["io.kubernetes.cri.sandbox-id"] == "p" * 64


def test_user_by_name_with_groups_and_strict_policy(tmp_path: Path) -> None:
    cfg = api_pb2.ContainerConfig(command=["/bin/true"])
    cfg.linux.security_context.run_as_username = "web"
    cfg.linux.security_context.supplemental_groups.append(3000)
    spec = _spec(tmp_path, cfg)
    assert spec["process"]["user"]["uid"] == 1000 and spec["process"]["user"]["gid"] == 1000
    # the primary group, the image's memberships (Merge) and the pod's groups, sorted
    assert spec["process"]["user"]["additionalGids"] == [1000, 2000, 3000]
    # a non-root user starts with no effective capabilities
    assert spec["process"]["capabilities"]["effective"] == []
    cfg.linux.security_context.supplemental_groups_policy = api_pb2.Strict
    assert _spec(tmp_path / "s", cfg)["process"]["user"]["additionalGids"] == [1000, 3000]


def test_run_as_group_needs_a_user(tmp_path: Path) -> None:
    cfg = api_pb2.ContainerConfig(command=["/x"])
    cfg.linux.security_context.run_as_group.value = 2000
    with pytest.raises(InvalidArgument, match="run_as_group"):
        _spec(tmp_path, cfg)
    cfg.linux.security_context.run_as_username = "web"
    assert _spec(tmp_path / "n", cfg)["process"]["user"]["gid"] == 2000


def test_image_user_and_unknown_user(tmp_path: Path) -> None:
    spec = _spec(tmp_path, api_pb2.ContainerConfig(command=["/x"]), {"User": "1000:2000"})
    assert (spec["process"]["user"]["uid"], spec["process"]["user"]["gid"]) == (1000, 2000)
    cfg = api_pb2.ContainerConfig(command=["/x"])
    cfg.linux.security_context.run_as_username = "nobody-here"
    with pytest.raises(InvalidArgument):
        _spec(tmp_path / "u", cfg)


def test_capabilities_add_drop_all() -> None:
    assert security.capability_set(["NET_ADMIN"], ["KILL"], False).count("CAP_NET_ADMIN") == 1
    assert "CAP_KILL" not in security.capability_set([], ["KILL"], False)
    assert security.capability_set(["NET_BIND_SERVICE"], ["ALL"], False) == ["CAP_NET_BIND_SERVICE"]
    assert set(security.capability_set(["ALL"], [], False)) == set(security.ALL_CAPABILITIES)
    assert set(security.capability_set([], ["ALL"], True)) == set(security.ALL_CAPABILITIES)


def test_seccomp_runtime_default_depends_on_capabilities(tmp_path: Path) -> None:
    cfg = api_pb2.ContainerConfig(command=["/x"])
    cfg.linux.security_context.seccomp.profile_type = api_pb2.SecurityProfile.RuntimeDefault
    profile = _spec(tmp_path, cfg)["linux"]["seccomp"]
    denied = profile["syscalls"][0]["names"]
    assert profile["defaultAction"] == "SCMP_ACT_ALLOW" and "mount" in denied and "kexec_load" in denied
    cfg.linux.security_context.capabilities.add_capabilities.append("SYS_ADMIN")
    denied = _spec(tmp_path / "b", cfg)["linux"]["seccomp"]["syscalls"][0]["names"]
    assert "mount" not in denied and "kexec_load" in denied


def test_seccomp_localhost_profile(tmp_path: Path) -> None:
    prof = tmp_path / "prof.json"
    prof.write_text(
        '{"defaultAction": "SCMP_ACT_ERRNO", "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]}], "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}'
    )
    cfg = api_pb2.ContainerConfig(command=["/x"])
    cfg.linux.security_context.seccomp.profile_type = api_pb2.SecurityProfile.Localhost
    cfg.linux.security_context.seccomp.localhost_ref = str(prof)
    out = _spec(tmp_path, cfg)["linux"]["seccomp"]
    assert out["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]
    assert out["syscalls"] == [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]
    cfg.linux.security_context.seccomp.localhost_ref = str(tmp_path / "missing.json")
    with pytest.raises(InvalidArgument):
        _spec(tmp_path / "m", cfg)


def test_privileged_needs_privileged_pod(tmp_path: Path) -> None:
    cfg = api_pb2.ContainerConfig(command=["/x"])
    cfg.linux.security_context.privileged = True
    with pytest.raises(InvalidArgument):
        _spec(tmp_path, cfg)
    spec = _spec(tmp_path / "p", cfg, privileged=True)
    assert "maskedPaths" not in spec["linux"] and "seccomp" not in spec["linux"]
    assert spec["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    # the host's device nodes, as containerd and CRI-O give a privileged container
    devices = {d["path"]: d for d in spec["linux"]["devices"]}
    assert devices["/dev/null"]["type"] == "c" and (
        devices["/dev/null"]["major"],
        devices["/dev/null"]["minor"],
    ) == (1, 3)
    assert not any(
        p.startswith(("/dev/pts/", "/dev/shm/", "/dev/mqueue/")) or p == "/dev/console" for p in devices
    )
    unprivileged = _spec(tmp_path / "u", api_pb2.ContainerConfig(command=["/x"]))
    assert "devices" not in unprivileged["linux"]


def test_host_devices_walk(tmp_path: Path) -> None:
    dev = tmp_path / "dev"
    (dev / "pts").mkdir(parents=True)
    (dev / "disk").mkdir()
    os.mknod(dev / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(dev / "console", 0o600 | stat.S_IFCHR, os.makedev(5, 1))
    os.mknod(dev / "pts" / "0", 0o620 | stat.S_IFCHR, os.makedev(136, 0))
    os.mknod(dev / "disk" / "sda", 0o660 | stat.S_IFBLK, os.makedev(8, 0))
    for node, mode in (("null", 0o666), ("disk/sda", 0o660)):
        os.chmod(dev / node, mode)  # past the umask
    (dev / "stdin").symlink_to("/proc/self/fd/0")
    (dev / "notadevice").write_text("")
    found = {
        d["path"].removeprefix(str(dev)): (d["type"], d["major"], d["minor"], d["fileMode"])
        for d in host_devices(dev)
    }
    assert found == {"/null": ("c", 1, 3, 0o666), "/disk/sda": ("b", 8, 0, 0o660)}


def test_mounts_propagation_and_missing_source(tmp_path: Path) -> None:
    src = tmp_path / "data"
    src.mkdir()
    cfg = api_pb2.ContainerConfig(command=["/x"])
    cfg.mounts.append(
        api_pb2.Mount(
            container_path="/data",
            host_path=str(src),
            readonly=True,
            propagation=api_pb2.PROPAGATION_HOST_TO_CONTAINER,
        )
    )
    mount = next(m for m in _spec(tmp_path, cfg)["mounts"] if m["destination"] == "/data")
    assert mount["options"] == ["rbind", "rslave", "ro"]
    assert _spec(tmp_path / "r", cfg)["linux"]["rootfsPropagation"] == "rslave"
    cfg.mounts.append(api_pb2.Mount(container_path="/gone", host_path=str(tmp_path / "nope")))
    with pytest.raises(InvalidArgument):
        _spec(tmp_path / "x", cfg)


def test_recursive_read_only_mounts(tmp_path: Path) -> None:
    src = tmp_path / "data"
    src.mkdir()

    def rro(**fields: object) -> api_pb2.Mount:
        values: dict[str, object] = {"container_path": "/d", "host_path": str(src), "readonly": True}
        values.update(fields)
        return api_pb2.Mount(recursive_read_only=True, **values)  # type: ignore[arg-type]

    [mount] = cri_mounts([rro()], rro_supported=True)
    assert mount["options"] == ["rbind", "rprivate", "rro", "ro"]
    # the CRI: readonly, private propagation and a runtime that can, else an error
    for bad, supported in (
        (rro(readonly=False), True),
        (rro(propagation=api_pb2.PROPAGATION_HOST_TO_CONTAINER), True),
        (rro(propagation=api_pb2.PROPAGATION_BIDIRECTIONAL), True),
        (rro(), False),
    ):
        with pytest.raises(InvalidArgument):
            cri_mounts([bad], rro_supported=supported)


def test_gvisor_gets_read_only_binds_without_the_rro_option_it_refuses(tmp_path: Path) -> None:
    src = tmp_path / "data"
    src.mkdir()
    cfg = api_pb2.ContainerConfig(command=["/x"])
    cfg.mounts.append(
        api_pb2.Mount(container_path="/d", host_path=str(src), readonly=True, recursive_read_only=True)
    )

    def options(sandbox: str) -> list[str]:
        base = tmp_path / (sandbox or "runc")
        base.mkdir()
        spec = container_spec(
            cid=CID,
            config=cfg,
            image_config={"config": {}},
            rootfs=_rootfs(base),
            pod=_pod(base, sandbox=sandbox),
            host=HostFacts("cgroupfs", 0),
            rro_supported=True,
        )
        return list(next(m for m in spec["mounts"] if m["destination"] == "/d")["options"])

    assert options("") == ["rbind", "rprivate", "rro", "ro"]
    # runsc: "unknown mount option" for rro; its `ro` already covers what lies beneath
    assert options("gvisor") == ["rbind", "rprivate", "ro"]


def test_pid_namespace_modes(tmp_path: Path) -> None:
    cfg = api_pb2.ContainerConfig(command=["/x"])
    cfg.linux.security_context.namespace_options.pid = api_pb2.POD
    ns = _spec(tmp_path, cfg, pid_path="/proc/42/ns/pid")["linux"]["namespaces"]
    assert {"type": "pid", "path": "/proc/42/ns/pid"} in ns
    cfg.linux.security_context.namespace_options.pid = api_pb2.NODE
    ns = _spec(tmp_path / "n", cfg)["linux"]["namespaces"]
    assert all(n["type"] != "pid" for n in ns)
    cfg.linux.security_context.namespace_options.pid = api_pb2.TARGET
    with pytest.raises(InvalidArgument):
        _spec(tmp_path / "t", cfg)


def _spec_with(tmp_path: Path, mode: int, target: str | None = None, **pod: object):  # type: ignore[no-untyped-def]
    cfg = api_pb2.ContainerConfig(command=["/x"])
    cfg.linux.security_context.namespace_options.pid = mode  # type: ignore[assignment]
    tmp_path.mkdir(exist_ok=True)
    return container_spec(
        cid=CID,
        config=cfg,
        image_config={"config": {}},
        rootfs=_rootfs(tmp_path),
        pod=_pod(tmp_path, **pod),
        host=HostFacts("cgroupfs", 0),
        target_pid_path=target,
    )


def test_pid_namespaces_inside_a_sandbox(tmp_path: Path) -> None:
    calls = iter(range(100))

    def pid_entries(mode: int, target: str | None = None) -> list[dict[str, str]]:
        base = tmp_path / str(next(calls))
        spec = _spec_with(base, mode, target, sandbox="gvisor", pid_path="/proc/7/ns/pid")
        return [n for n in spec["linux"]["namespaces"] if n["type"] == "pid"]

    # the pod's: the sandbox's root namespace, whose pid 1 is the infra process
    assert pid_entries(api_pb2.POD) == []
    # a container's own: named after it, so that a TARGET container can name it too
    own = pid_entries(api_pb2.CONTAINER)
    assert own == [{"type": "pid", "path": str(tmp_path / "1" / "pid-namespaces" / CID)}]
    assert pid_entries(api_pb2.TARGET, own[0]["path"]) == own
    assert pid_entries(api_pb2.TARGET, "") == []  # the target shares the pod's
    with pytest.raises(InvalidArgument):
        pid_entries(api_pb2.TARGET)
    with pytest.raises(InvalidArgument):
        pid_entries(api_pb2.NODE)


def test_a_vm_pod_shares_its_pid_namespace_as_runc_does_and_gets_no_host_devices(tmp_path: Path) -> None:
    cfg = api_pb2.ContainerConfig(command=["/x"])
    cfg.linux.security_context.privileged = True
    spec = _spec(tmp_path / "vm", cfg, sandbox="vm", privileged=True, pid_path="/proc/7/ns/pid")
    # POD mode (0): the infra process's namespace by path, which a VM shim reads as "share"
    assert {"type": "pid", "path": "/proc/7/ns/pid"} in spec["linux"]["namespaces"]
    assert "devices" not in spec["linux"]
    runc = _spec(tmp_path / "runc", cfg, privileged=True, pid_path="/proc/7/ns/pid")
    assert runc["linux"]["devices"]


def test_gvisor_masks_and_protects_the_containers_own_paths_with_mounts(tmp_path: Path) -> None:
    cfg = api_pb2.ContainerConfig(command=["/x"])
    cfg.linux.security_context.masked_paths.extend(
        ["/bin/ls", "/etc/secret", "/proc/kcore", "/gone", "/etc/hosts"]
    )
    cfg.linux.security_context.readonly_paths.extend(["/tmp", "/proc/sys", "/sneaky"])
    root = tmp_path / "rootfs"
    for d in ("bin", "etc/secret", "tmp"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "bin/ls").write_text("")
    (root / "sneaky").symlink_to("/etc/../../../../outside")  # resolved inside the rootfs: absent

    def extra(sandbox: str) -> list[dict[str, object]]:
        spec = container_spec(
            cid=CID,
            config=cfg,
            image_config={"config": {}},
            rootfs=root,
            pod=_pod(tmp_path, sandbox=sandbox),
            host=HostFacts("cgroupfs", 0),
        )
        base = {
            m["destination"]
            for m in _spec(tmp_path / f"base-{sandbox or 'runc'}", api_pb2.ContainerConfig(command=["/x"]))[
                "mounts"
            ]
        }
        return [m for m in spec["mounts"] if m["destination"] not in base]

    assert extra("") == []  # runc applies maskedPaths and readonlyPaths itself
    assert extra("gvisor") == [
        {
            "destination": "/bin/ls",
            "type": "bind",
            "source": "/dev/null",
            "options": ["rbind", "rprivate", "ro"],
        },
        {
            "destination": "/etc/secret",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["ro", "nosuid", "nodev", "noexec"],
        },
        {
            "destination": "/tmp",
            "type": "bind",
            "source": str(root / "tmp"),
            "options": ["rbind", "rprivate", "ro"],
        },
    ]


def test_every_container_names_its_pod_sandbox(tmp_path: Path) -> None:
    for sandbox in ("", "gvisor", "vm"):
        spec = _spec_with(tmp_path / (sandbox or "none"), api_pb2.POD, sandbox=sandbox)
        assert spec["annotations"]["io.kubernetes.cri.container-type"] == "container"
        assert spec["annotations"]["io.kubernetes.cri.sandbox-id"] == "p" * 64
    infra = infra_spec(
        pod=_pod(tmp_path, sandbox="gvisor"),
        rootfs=tmp_path,
        catatonit=Path("/usr/bin/catatonit"),
        host=HostFacts("cgroupfs", 0),
    )
    assert infra["annotations"]["io.kubernetes.cri.container-type"] == "sandbox"
    assert infra["annotations"]["io.kubernetes.cri.sandbox-id"] == "p" * 64


def test_a_sandbox_neither_propagates_mounts_back_nor_lacks_its_bind_capability(tmp_path: Path) -> None:
    source = tmp_path / "vol"
    source.mkdir()
    cfg = api_pb2.ContainerConfig(command=["/x"])
    cfg.mounts.add(container_path="/v", host_path=str(source), propagation=api_pb2.PROPAGATION_BIDIRECTIONAL)
    assert _spec(tmp_path / "runc", cfg)["linux"]["rootfsPropagation"] == "rshared"
    with pytest.raises(InvalidArgument, match="propagate"):
        _spec(tmp_path / "gvisor", cfg, sandbox="gvisor")
    with pytest.raises(InvalidArgument, match="propagate"):
        _spec(tmp_path / "vm", cfg, sandbox="vm")
    # the infra process of a sandbox lends it the right to bind ports below 1024
    host = HostFacts("cgroupfs", 0)
    plain = infra_spec(pod=_pod(tmp_path), rootfs=tmp_path, catatonit=Path("/c"), host=host)
    sandbox = infra_spec(
        pod=_pod(tmp_path, sandbox="gvisor"), rootfs=tmp_path, catatonit=Path("/c"), host=host
    )
    assert plain["process"]["capabilities"]["bounding"] == []
    assert sandbox["process"]["capabilities"]["bounding"] == ["CAP_NET_BIND_SERVICE"]


def test_resources_and_oom_clamp() -> None:
    res = api_pb2.LinuxContainerResources(
        cpu_shares=256, cpu_quota=50000, cpu_period=100000, memory_limit_in_bytes=1 << 20
    )
    out = oci_resources(res)
    assert out["cpu"] == {"shares": 256, "quota": 50000, "period": 100000}
    assert out["memory"] == {"limit": 1 << 20, "swap": 1 << 20}
    assert clamp_oom_score_adj(-998, 0) == 0
    assert clamp_oom_score_adj(-998, -1000) == -998
    assert clamp_oom_score_adj(1500, 0) == 1000
    assert (
        container_cgroups_path("kubepods-pod1.slice", CID, "systemd") == f"kubepods-pod1.slice:cri-py:{CID}"
    )
    assert container_cgroups_path("", CID, "cgroupfs") == f"/cri-py-{CID}"
    # named for cAdvisor's CRI-O handler when the inspect API is served
    assert (
        container_cgroups_path("/kubepods/pod1", CID, "cgroupfs", "crio")
        == f"/kubepods/pod1/crio-{CID}.scope"
    )
    assert container_cgroups_path("kubepods.slice", CID, "systemd", "crio") == f"kubepods.slice:crio:{CID}"


def test_signals() -> None:
    assert resolve_signal(api_pb2.SIGKILL, "") == 9
    assert resolve_signal(0, "SIGQUIT") == 3
    assert resolve_signal(0, "USR1") == 10
    assert resolve_signal(0, "") == 15
    with pytest.raises(InvalidArgument):
        resolve_signal(0, "SIGNOPE")


def test_infra_spec(tmp_path: Path) -> None:
    spec = infra_spec(
        pod=_pod(tmp_path),
        rootfs=tmp_path,
        catatonit=Path("/usr/bin/catatonit"),
        host=HostFacts("cgroupfs", 0),
    )
    assert spec["process"]["args"] == ["/pause", "-P"]
    assert spec["process"]["oomScoreAdj"] == 0  # -998 asked, clamped to what we may set
    assert spec["root"]["readonly"] is True
    assert {"type": "pid"} in spec["linux"]["namespaces"]


def test_capabilities_limited_to_what_the_daemon_holds(tmp_path: Path) -> None:
    cfg = api_pb2.ContainerConfig(command=["/x"])
    cfg.linux.security_context.privileged = True
    held = frozenset(security.ALL_CAPABILITIES) - {"CAP_SYS_RESOURCE"}
    spec = container_spec(
        cid=CID,
        config=cfg,
        image_config={},
        rootfs=_rootfs(tmp_path),
        pod=_pod(tmp_path, privileged=True),
        host=HostFacts("cgroupfs", 0, held),
    )
    assert "CAP_SYS_RESOURCE" not in spec["process"]["capabilities"]["bounding"]
    assert "CAP_SYS_ADMIN" in spec["process"]["capabilities"]["bounding"]


def test_hugepage_limits_kept_only_with_a_hugetlb_controller(tmp_path: Path) -> None:
    res = api_pb2.LinuxContainerResources(hugepage_limits=[api_pb2.HugepageLimit(page_size="2MB", limit=0)])
    assert oci_resources(res, hugetlb=True)["hugepageLimits"] == [{"pageSize": "2MB", "limit": 0}]
    assert "hugepageLimits" not in oci_resources(res, hugetlb=False)
    assert hugetlb_available(tmp_path) is False
    (tmp_path / "cgroup.controllers").write_text("cpu memory hugetlb pids\n")
    assert hugetlb_available(tmp_path) is True
    (tmp_path / "cgroup.controllers").unlink()
    (tmp_path / "hugetlb").mkdir()
    assert hugetlb_available(tmp_path) is True


def test_user_namespace_of_the_pod(tmp_path: Path) -> None:
    maps = {
        "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
        "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
    }
    pod = {"userns_path": "/run/pins/user", "id_mappings": maps}
    spec = _spec(tmp_path, api_pb2.ContainerConfig(command=["/x"]), **pod)
    kinds = [n["type"] for n in spec["linux"]["namespaces"]]
    assert (
        kinds[:2] == ["mount", "user"]
        and {"type": "user", "path": "/run/pins/user"} in spec["linux"]["namespaces"]
    )
    assert (
        spec["linux"]["uidMappings"] == maps["uidMappings"]
        and spec["linux"]["gidMappings"] == maps["gidMappings"]
    )
    # a user the namespace has no id for cannot run in it
    cfg = api_pb2.ContainerConfig(command=["/x"])
    cfg.linux.security_context.run_as_user.value = 70000
    with pytest.raises(InvalidArgument, match="not mapped"):
        _spec(tmp_path / "u", cfg, **pod)
    infra = infra_spec(
        pod=_pod(tmp_path, **pod), rootfs=tmp_path, catatonit=tmp_path / "c", host=HostFacts("cgroupfs", 0)
    )
    assert infra["linux"]["uidMappings"] == maps["uidMappings"]
    assert infra["process"]["user"] == {"uid": 65535, "gid": 65535}
    small = {k: [{"containerID": 0, "hostID": 100000, "size": 1000}] for k in maps}
    infra = infra_spec(
        pod=_pod(tmp_path, userns_path="/p", id_mappings=small),
        rootfs=tmp_path,
        catatonit=tmp_path / "c",
        host=HostFacts("cgroupfs", 0),
    )
    assert infra["process"]["user"] == {"uid": 0, "gid": 0}  # 65535 has no id in there


def test_missing_mount_sources_are_made_as_directories(tmp_path: Path) -> None:
    present = tmp_path / "present"
    present.write_text("a file stays a file")
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    mounts = [
        api_pb2.Mount(container_path="/a", host_path=str(tmp_path / "new" / "deep")),
        api_pb2.Mount(container_path="/b", host_path=str(present)),
        api_pb2.Mount(container_path="/c", host_path=str(dangling)),
        api_pb2.Mount(container_path="/d", image=api_pb2.ImageSpec(image="busybox")),
    ]
    assert create_missing_mount_sources(mounts) == [str(tmp_path / "new" / "deep")]
    assert (tmp_path / "new" / "deep").is_dir()
    assert present.read_text() == "a file stays a file"
    assert not (tmp_path / "nowhere").exists()  # a symlink is the operator's: not followed
    assert create_missing_mount_sources(mounts) == []
