"""Load manifests into `kubernetes.client` models, rejecting what the API server would reject.

The models (pydantic, `extra="forbid"`, strict types) do the schema work; this module turns their
errors into the field paths kubectl users know (`spec.containers[0].imagePullPolicyy: unknown
field`), pulls the pod template out of workload kinds, and gives static pods the UID kubelet
would (an md5 over the manifest, the node name and the file).
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic
import yaml
from kubernetes import client as k8s

from cri_py.errors import InvalidArgument

# kind -> (apiVersion, model); workloads contribute their pod template
_KINDS: dict[str, tuple[str, Any]] = {
    "Pod": ("v1", k8s.V1Pod),
    "Deployment": ("apps/v1", k8s.V1Deployment),
    "StatefulSet": ("apps/v1", k8s.V1StatefulSet),
    "DaemonSet": ("apps/v1", k8s.V1DaemonSet),
    "Job": ("batch/v1", k8s.V1Job),
}
# Quantities are strings in the models, but the API accepts YAML numbers for them (`cpu: 1`).
_QUANTITY_MAPS = frozenset({"limits", "requests", "overhead"})
_QUANTITY_SCALARS = frozenset({"sizeLimit", "divisor"})
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class ManifestError(InvalidArgument):
    """A manifest the API server would refuse; the message starts with the field's path."""


@dataclass(frozen=True)
class PlayPod:
    """One pod to play: the model (defaults not yet applied) and where it came from."""

    pod: Any  # k8s.V1Pod
    source: str  # "<file>#<document index>", for messages


def format_path(loc: Sequence[int | str]) -> str:
    """('spec', 'containers', 0, 'name') -> 'spec.containers[0].name'."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _is_union_tag(part: int | str) -> bool:
    # pydantic names the union member it tried (int, str, ...) inside the location
    return isinstance(part, str) and (part in {"int", "str", "bool", "float"} or "[" in part)


def describe_errors(errors: Sequence[Any]) -> list[str]:
    """One line per field path; the members of a union (IntOrString) are merged into one line."""
    by_path: dict[str, list[str]] = {}
    for error in errors:
        path = format_path([p for p in error["loc"] if not _is_union_tag(p)])
        if error["type"] == "extra_forbidden":
            text = "unknown field"
        elif error["type"] == "missing":
            text = "Required value"
        else:
            text = error["msg"].lower()
            suffix = f" (got {type(error.get('input')).__name__})"
            text = text + suffix
        by_path.setdefault(path, []).append(text)
    lines = []
    for path, texts in by_path.items():
        if len(texts) > 1:
            # "input should be a valid integer (got list)" + "... string (got list)"
            got = texts[0][texts[0].rfind(" (got ") :]
            kinds = [t.removesuffix(got).removeprefix("input should be a valid ") for t in texts]
            lines.append(f"{path}: input should be a valid {' or '.join(kinds)}{got}")
        else:
            lines.append(f"{path}: {texts[0]}")
    return sorted(lines)


def _quantities_as_strings(node: Any, key: str = "") -> Any:
    if isinstance(node, dict):
        if key in _QUANTITY_MAPS:
            return {k: _number_to_str(v) for k, v in node.items()}
        return {k: _quantities_as_strings(v, k if isinstance(k, str) else "") for k, v in node.items()}
    if isinstance(node, list):
        return [_quantities_as_strings(v) for v in node]
    if key in _QUANTITY_SCALARS:
        return _number_to_str(node)
    return node


def _number_to_str(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    return str(value)


def _validate(model: Any, doc: dict[str, Any], source: str) -> Any:
    try:
        return model.model_validate(_quantities_as_strings(doc))
    except pydantic.ValidationError as exc:
        lines = describe_errors(exc.errors())
        raise ManifestError(f"{source}: " + "; ".join(lines)) from None


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ManifestError(message)


def _check_required(pod: Any, where: str) -> None:
    """Fields the API server requires; the models make everything optional."""
    meta, spec = pod.metadata, pod.spec
    _require(meta is not None and bool(meta.name), f"{where}: metadata.name: Required value")
    _require(
        _DNS_SUBDOMAIN.match(meta.name) is not None and len(meta.name) <= 253,
        f"{where}: metadata.name: Invalid value {meta.name!r}: must be a lowercase RFC 1123 subdomain",
    )
    if meta.namespace:
        _require(
            _DNS_LABEL.match(meta.namespace) is not None,
            f"{where}: metadata.namespace: Invalid value {meta.namespace!r}: must be a DNS label",
        )
    _require(spec is not None, f"{where}: spec: Required value")
    _require(bool(spec.containers), f"{where}: spec.containers: Required value")
    names: set[str] = set()
    for field in ("init_containers", "containers"):
        alias = "initContainers" if field == "init_containers" else "containers"
        for i, container in enumerate(getattr(spec, field) or []):
            at = f"{where}: spec.{alias}[{i}]"
            _require(bool(container.name), f"{at}.name: Required value")
            _require(
                _DNS_LABEL.match(container.name) is not None,
                f"{at}.name: Invalid value {container.name!r}: must be a DNS label",
            )
            _require(container.name not in names, f"{at}.name: Duplicate value {container.name!r}")
            names.add(container.name)
            _require(bool(container.image), f"{at}.image: Required value")
    volumes: set[str] = set()
    for i, volume in enumerate(spec.volumes or []):
        _require(bool(volume.name), f"{where}: spec.volumes[{i}].name: Required value")
        _require(volume.name not in volumes, f"{where}: spec.volumes[{i}].name: Duplicate value")
        volumes.add(volume.name)


def static_pod_uid(doc: dict[str, Any], node_name: str, file: str) -> str:
    """kubelet's file source hashes the pod, the node and the file into the UID (32 hex digits)."""
    hasher = hashlib.md5(usedforsecurity=False)
    hasher.update(json.dumps(doc, sort_keys=True, default=str).encode())
    hasher.update(f"host:{node_name}".encode())
    hasher.update(f"file:{file}".encode())
    return hasher.hexdigest()


def _pod_from(doc: dict[str, Any], source: str) -> Any:
    kind = doc.get("kind")
    if kind not in _KINDS:
        raise ManifestError(
            f"{source}: kind: unsupported value {kind!r} (expected one of {', '.join(_KINDS)})"
        )
    api_version, model = _KINDS[kind]
    if doc.get("apiVersion") != api_version:
        raise ManifestError(f"{source}: apiVersion: expected {api_version!r} for kind {kind}")
    obj = _validate(model, doc, source)
    if kind == "Pod":
        return obj
    # one pod from the template, named after the workload (replicas and selectors do not apply)
    _require(obj.metadata is not None and bool(obj.metadata.name), f"{source}: metadata.name: Required value")
    _require(
        obj.spec is not None and obj.spec.template is not None, f"{source}: spec.template: Required value"
    )
    template = obj.spec.template
    meta = template.metadata or k8s.V1ObjectMeta()
    meta.name = obj.metadata.name
    meta.namespace = obj.metadata.namespace
    return k8s.V1Pod(api_version="v1", kind="Pod", metadata=meta, spec=template.spec)


def _list_items(doc: dict[str, Any], source: str) -> list[tuple[dict[str, Any], str]]:
    """A `kind: List` (what `kubectl get -o yaml` prints) stands for its items."""
    if doc.get("kind") != "List":
        return [(doc, source)]
    unknown = sorted(set(doc) - {"apiVersion", "kind", "metadata", "items"})
    if unknown:
        raise ManifestError(f"{source}: {unknown[0]}: unknown field")
    items = doc.get("items") or []
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ManifestError(f"{source}: items: expected a list of objects")
    return [(item, f"{source}.items[{j}]") for j, item in enumerate(items)]


def load_documents(text: str, file: str, node_name: str) -> list[PlayPod]:
    """Every pod a YAML stream describes, validated and with namespace and UID filled in."""
    pods: list[PlayPod] = []
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        raise ManifestError(f"{file}: not valid YAML: {exc}") from None
    for index, doc in enumerate(docs):
        if doc is None:
            continue
        source = f"{file}#{index}"
        if not isinstance(doc, dict):
            raise ManifestError(f"{source}: expected a mapping, got {type(doc).__name__}")
        for item, where in _list_items(doc, source):
            pod = _pod_from(item, where)
            _check_required(pod, where)
            if not pod.metadata.namespace:
                pod.metadata.namespace = "default"
            if not pod.metadata.uid:
                pod.metadata.uid = static_pod_uid(item, node_name, file)
            pods.append(PlayPod(pod=pod, source=where))
    if not pods:
        raise ManifestError(f"{file}: no documents")
    keys = [(p.pod.metadata.namespace, p.pod.metadata.name) for p in pods]
    _require(len(set(keys)) == len(keys), f"{file}: two documents describe the same pod")
    return pods


def load_file(path: str, node_name: str) -> list[PlayPod]:
    """The pods of a manifest file, or of standard input for `-`."""
    if path == "-":
        return load_documents(sys.stdin.read(), "<stdin>", node_name)
    file = str(Path(path).resolve())
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ManifestError(f"{path}: {exc.strerror}") from None
    return load_documents(text, file, node_name)


def iter_containers(pod: Any) -> Iterator[tuple[bool, Any]]:
    """(is_init, container) for init containers first, then app containers."""
    for container in pod.spec.init_containers or []:
        yield True, container
    for container in pod.spec.containers:
        yield False, container
