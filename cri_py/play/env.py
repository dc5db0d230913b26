"""Container environment and `$(VAR)` expansion, as kubelet's makeEnvironmentVariables does it."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from cri_py.errors import InvalidArgument
from cri_py.play.node import NodeInfo
from cri_py.play.quantity import milli_value, parse_quantity, value
from cri_py.play.resources import container_limits, container_requests


def expand(text: str, mapping: Callable[[str], str]) -> str:
    """Kubernetes expansion: `$(NAME)` -> mapping(NAME), `$$` -> `$`, anything else kept."""
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    while cursor < len(text):
        if text[cursor] == "$" and cursor + 1 < len(text):
            out.append(text[checkpoint:cursor])
            rest = text[cursor + 1 :]
            if rest[0] == "$":
                out.append("$")
                advance = 1
            elif rest[0] == "(":
                close = rest.find(")", 1)
                if close == -1:
                    out.append("$(")
                    advance = 1
                else:
                    out.append(mapping(rest[1:close]))
                    advance = close + 1
            else:
                out.append("$" + rest[0])
                advance = 1
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    out.append(text[checkpoint:])
    return "".join(out)


def mapping_for(*contexts: Mapping[str, str]) -> Callable[[str], str]:
    def lookup(name: str) -> str:
        for context in contexts:
            if name in context:
                return context[name]
        return f"$({name})"

    return lookup


@dataclass(frozen=True)
class PodRuntime:
    """What kubelet knows about the running pod when it creates a container."""

    pod_ips: tuple[str, ...]


def _format_map(values: Mapping[str, str]) -> str:
    return "\n".join(f"{k}={json.dumps(values[k])}" for k in sorted(values))


def field_value(where: str, field: str, pod: Any, node: NodeInfo, runtime: PodRuntime) -> str:
    """A fieldRef's value; `where` (the fieldRef's own path) prefixes errors."""
    meta = pod.metadata
    simple = {
        "metadata.name": meta.name,
        "metadata.namespace": meta.namespace,
        "metadata.uid": meta.uid,
        "spec.nodeName": node.name,
        "spec.serviceAccountName": pod.spec.service_account_name or "",
        "status.hostIP": node.host_ips[0] if node.host_ips else "",
        "status.hostIPs": ",".join(node.host_ips),
        "status.podIP": runtime.pod_ips[0] if runtime.pod_ips else "",
        "status.podIPs": ",".join(runtime.pod_ips),
        "metadata.labels": _format_map(meta.labels or {}),
        "metadata.annotations": _format_map(meta.annotations or {}),
    }
    if field in simple:
        return str(simple[field])
    for prefix, values in (("metadata.labels", meta.labels), ("metadata.annotations", meta.annotations)):
        if field.startswith(prefix + "['") and field.endswith("']"):
            return str((values or {}).get(field[len(prefix) + 2 : -2], ""))
    raise InvalidArgument(f"{where}.fieldPath: Unsupported value {field!r}")


def resource_value(where: str, ref: Any, container: Any, node: NodeInfo) -> str:
    """A resourceFieldRef's value; limits left out are the node's allocatable
    (defaultPodLimitsForDownwardAPI); `where` (the ref's own path) prefixes errors."""
    limits = {
        "cpu": Fraction(node.cpus),
        "memory": Fraction(node.memory_bytes),
        **container_limits(container),
    }
    requests = container_requests(container)
    divisor = parse_quantity(ref.divisor, f"{where}.divisor") if ref.divisor else Fraction(0)
    if divisor == 0:
        divisor = Fraction(1)
    source, _, name = ref.resource.partition(".")
    amounts = {"limits": limits, "requests": requests}.get(source)
    if amounts is None or name not in ("cpu", "memory", "ephemeral-storage"):
        raise InvalidArgument(f"{where}.resource: Unsupported value {ref.resource!r}")
    amount = amounts.get(name, Fraction(0))
    if name == "cpu":
        return str(math.ceil(Fraction(milli_value(amount), milli_value(divisor))))
    if name == "ephemeral-storage" and source == "limits" and name not in container_limits(container):
        raise InvalidArgument(f"{where}: limits.ephemeral-storage needs an explicit limit in cri-py play")
    return str(math.ceil(Fraction(value(amount), value(divisor))))


def container_env(
    pod: Any,
    container: Any,
    containers_by_name: Mapping[str, Any],
    path: str,
    node: NodeInfo,
    runtime: PodRuntime,
) -> dict[str, str]:
    """The container's environment in declaration order (a later duplicate replaces the value)."""
    if container.env_from:
        raise InvalidArgument(f"{path}.envFrom: not supported by cri-py play (no ConfigMaps or Secrets)")
    env: dict[str, str] = {}
    lookup = mapping_for(env)
    for i, var in enumerate(container.env or []):
        at = f"{path}.env[{i}]"
        if not var.name:
            raise InvalidArgument(f"{at}.name: Required value")
        result = var.value or ""
        if result:
            result = expand(result, lookup)
        elif var.value_from is not None:
            source = var.value_from
            if source.field_ref is not None:
                result = field_value(
                    f"{at}.valueFrom.fieldRef", source.field_ref.field_path, pod, node, runtime
                )
            elif source.resource_field_ref is not None:
                ref = source.resource_field_ref
                target = containers_by_name.get(ref.container_name) if ref.container_name else container
                if target is None:
                    raise InvalidArgument(
                        f"{at}.valueFrom.resourceFieldRef.containerName: no container {ref.container_name!r}"
                    )
                result = resource_value(f"{at}.valueFrom.resourceFieldRef", ref, target, node)
            else:
                raise InvalidArgument(
                    f"{at}.valueFrom: only fieldRef and resourceFieldRef are supported by cri-py play"
                )
        env[var.name] = result
    return env


def command_and_args(container: Any, env: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """ExpandContainerCommandAndArgs."""
    lookup = mapping_for(env)
    return [expand(c, lookup) for c in container.command or []], [
        expand(a, lookup) for a in container.args or []
    ]
