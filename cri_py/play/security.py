"""Pod and container security contexts, translated as kubelet's security_context.go does."""

from __future__ import annotations

import os
from typing import Any

from cri_py.api import api_pb2
from cri_py.errors import InvalidArgument

# kubelet's defaults for procMount Default are the runtime's own defaults (same paths)
from cri_py.oci.security import DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS
from cri_py.play.manifest import iter_containers

NodeMode = api_pb2.NamespaceMode
SUPPLEMENTAL_GROUPS_POLICY = {
    "Merge": api_pb2.SupplementalGroupsPolicy.Merge,
    "Strict": api_pb2.SupplementalGroupsPolicy.Strict,
}


def namespace_options(pod: Any) -> api_pb2.NamespaceOption:
    """NamespacesForPod; user namespaces stay the node's (hostUsers: false is not supported)."""
    spec = pod.spec
    if spec.host_users is False:
        raise InvalidArgument("spec.hostUsers: false (user namespaces) is not supported by cri-py play")
    if spec.host_pid:
        pid = api_pb2.NamespaceMode.NODE
    elif spec.share_process_namespace:
        pid = api_pb2.NamespaceMode.POD
    else:
        pid = api_pb2.NamespaceMode.CONTAINER
    return api_pb2.NamespaceOption(
        network=api_pb2.NamespaceMode.NODE if spec.host_network else api_pb2.NamespaceMode.POD,
        pid=pid,
        ipc=api_pb2.NamespaceMode.NODE if spec.host_ipc else api_pb2.NamespaceMode.POD,
        userns_options=api_pb2.UserNamespace(mode=api_pb2.NamespaceMode.NODE),
    )


def _selinux(options: Any) -> api_pb2.SELinuxOption | None:
    if options is None:
        return None
    return api_pb2.SELinuxOption(
        user=options.user or "", role=options.role or "", type=options.type or "", level=options.level or ""
    )


def has_privileged_container(pod: Any) -> bool:
    return any(
        c.security_context is not None and bool(c.security_context.privileged)
        for _, c in iter_containers(pod)
    )


def _pod_groups(pod: Any) -> list[int]:
    sc = pod.spec.security_context
    groups: list[int] = []
    if sc.fs_group is not None:
        groups.append(sc.fs_group)
    groups.extend(sc.supplemental_groups or [])
    return groups


def _groups_policy(sc: Any) -> api_pb2.SupplementalGroupsPolicy:
    policy = sc.supplemental_groups_policy
    if policy is None:
        return api_pb2.SupplementalGroupsPolicy.Merge
    if policy not in SUPPLEMENTAL_GROUPS_POLICY:
        raise InvalidArgument(f"spec.securityContext.supplementalGroupsPolicy: Unsupported value {policy!r}")
    return SUPPLEMENTAL_GROUPS_POLICY[policy]


def sandbox_security_context(pod: Any) -> api_pb2.LinuxSandboxSecurityContext:
    sc = pod.spec.security_context
    # kubelet forces runtime/default on the sandbox so pods may use least-privilege profiles
    result = api_pb2.LinuxSandboxSecurityContext(
        privileged=has_privileged_container(pod),
        seccomp=api_pb2.SecurityProfile(profile_type=api_pb2.SecurityProfile.ProfileType.RuntimeDefault),
        namespace_options=namespace_options(pod),
    )
    if sc.run_as_user is not None:
        result.run_as_user.value = sc.run_as_user
    if sc.run_as_group is not None:
        result.run_as_group.value = sc.run_as_group
    result.supplemental_groups.extend(_pod_groups(pod))
    if sc.supplemental_groups_policy is not None:
        result.supplemental_groups_policy = _groups_policy(sc)
    selinux = _selinux(sc.se_linux_options)
    if selinux is not None:
        result.selinux_options.CopyFrom(selinux)
    return result


def effective_security_context(pod: Any, container: Any) -> dict[str, Any]:
    """DetermineEffectiveSecurityContext: pod-level user/group/SELinux overridden by the container's."""
    psc = pod.spec.security_context
    effective: dict[str, Any] = {
        "se_linux_options": psc.se_linux_options,
        "run_as_user": psc.run_as_user,
        "run_as_group": psc.run_as_group,
        "run_as_non_root": psc.run_as_non_root,
    }
    csc = container.security_context
    if csc is not None:
        for field in (
            "se_linux_options",
            "capabilities",
            "privileged",
            "run_as_user",
            "run_as_group",
            "run_as_non_root",
            "read_only_root_filesystem",
            "allow_privilege_escalation",
            "proc_mount",
        ):
            if getattr(csc, field) is not None:
                effective[field] = getattr(csc, field)
    return effective


def seccomp_profile(pod: Any, container: Any, profile_root: str) -> api_pb2.SecurityProfile:
    """getSeccompProfile with --seccomp-default off: container field, pod field, else Unconfined."""
    csc = container.security_context
    profile = csc.seccomp_profile if csc is not None else None
    where = "securityContext.seccompProfile"
    if profile is None:
        profile = pod.spec.security_context.seccomp_profile
        where = "spec.securityContext.seccompProfile"
    types = api_pb2.SecurityProfile.ProfileType
    if profile is None:
        return api_pb2.SecurityProfile(profile_type=types.Unconfined)
    if profile.type == "RuntimeDefault":
        return api_pb2.SecurityProfile(profile_type=types.RuntimeDefault)
    if profile.type == "Localhost":
        if not profile.localhost_profile:
            raise InvalidArgument(f"{where}.localhostProfile: must be set if type is Localhost")
        return api_pb2.SecurityProfile(
            profile_type=types.Localhost, localhost_ref=os.path.join(profile_root, profile.localhost_profile)
        )
    return api_pb2.SecurityProfile(profile_type=types.Unconfined)


def apparmor_profile(pod: Any, container: Any) -> tuple[api_pb2.SecurityProfile | None, str]:
    """The AppArmor profile from the fields or the beta annotation, with its deprecated string form."""
    csc = container.security_context
    profile = csc.app_armor_profile if csc is not None else None
    if profile is None:
        profile = pod.spec.security_context.app_armor_profile
    kind, local = (profile.type, profile.localhost_profile) if profile is not None else ("", None)
    if profile is None:
        annotation = (pod.metadata.annotations or {}).get(
            f"container.apparmor.security.beta.kubernetes.io/{container.name}"
        )
        if annotation is None:
            return None, ""
        if annotation == "runtime/default":
            kind = "RuntimeDefault"
        elif annotation == "unconfined":
            kind = "Unconfined"
        elif annotation.startswith("localhost/"):
            kind, local = "Localhost", annotation.removeprefix("localhost/")
    types = api_pb2.SecurityProfile.ProfileType
    if kind == "RuntimeDefault":
        return api_pb2.SecurityProfile(profile_type=types.RuntimeDefault), "runtime/default"
    if kind == "Unconfined":
        return api_pb2.SecurityProfile(profile_type=types.Unconfined), "unconfined"
    if kind == "Localhost":
        if not local:
            raise InvalidArgument("appArmorProfile.localhostProfile: missing localhost apparmor profile name")
        return api_pb2.SecurityProfile(
            profile_type=types.Localhost, localhost_ref=local
        ), f"localhost/{local}"
    raise InvalidArgument(f"appArmorProfile.type: Unsupported value {kind!r}")


def container_security_context(
    pod: Any, container: Any, image_uid: int | None, image_user: str, profile_root: str
) -> api_pb2.LinuxContainerSecurityContext:
    """determineEffectiveSecurityContext for one container; the image's user fills in run_as_user."""
    eff = effective_security_context(pod, container)
    result = api_pb2.LinuxContainerSecurityContext()
    caps = eff.get("capabilities")
    if caps is not None:
        result.capabilities.add_capabilities.extend(caps.add or [])
        result.capabilities.drop_capabilities.extend(caps.drop or [])
    selinux = _selinux(eff.get("se_linux_options"))
    if selinux is not None:
        result.selinux_options.CopyFrom(selinux)
    if eff.get("run_as_user") is not None:
        result.run_as_user.value = eff["run_as_user"]
    if eff.get("run_as_group") is not None:
        result.run_as_group.value = eff["run_as_group"]
    result.privileged = bool(eff.get("privileged"))
    result.readonly_rootfs = bool(eff.get("read_only_root_filesystem"))
    result.seccomp.CopyFrom(seccomp_profile(pod, container, profile_root))
    apparmor, deprecated = apparmor_profile(pod, container)
    if apparmor is not None:
        result.apparmor.CopyFrom(apparmor)
        result.apparmor_profile = deprecated
    if eff.get("run_as_user") is None:
        if image_uid is not None:
            result.run_as_user.value = image_uid
        result.run_as_username = image_user
    result.namespace_options.CopyFrom(namespace_options(pod))
    result.supplemental_groups.extend(_pod_groups(pod))
    if pod.spec.security_context.supplemental_groups_policy is not None:
        result.supplemental_groups_policy = _groups_policy(pod.spec.security_context)
    ape = eff.get("allow_privilege_escalation")
    result.no_new_privs = ape is not None and not ape
    if eff.get("proc_mount") != "Unmasked":
        result.masked_paths.extend(DEFAULT_MASKED_PATHS)
        result.readonly_paths.extend(DEFAULT_READONLY_PATHS)
    return result


def verify_run_as_non_root(pod: Any, container: Any, image_uid: int | None, image_user: str) -> None:
    """verifyRunAsNonRoot: refuse to start a runAsNonRoot container that would run as root."""
    eff = effective_security_context(pod, container)
    if not eff.get("run_as_non_root"):
        return
    uid = eff.get("run_as_user")
    if uid is None:
        uid = image_uid
    if uid is None:
        if image_user:
            raise InvalidArgument(
                f"container has runAsNonRoot and image has non-numeric user ({image_user}), "
                "cannot verify user is non-root"
            )
        uid = 0
    if uid == 0:
        raise InvalidArgument("container has runAsNonRoot and image will run as root")
