"""downwardAPI volumes: the files' contents and kubelet's atomic-writer layout."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import pytest

from cri_py.errors import InvalidArgument
from cri_py.play.downward import payload, write_atomic
from tests.unit.play.helpers import NODE, UID, load_pod

POD = """
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: ns, labels: {b: "2", a: "1"}, annotations: {note: hi}}
spec:
  containers:
  - {name: c, image: i, resources: {limits: {cpu: 250m, memory: 32Mi}}}
  volumes:
  - name: info
    downwardAPI:
      defaultMode: 0600
      items:
      - {path: labels, fieldRef: {fieldPath: metadata.labels}}
      - {path: meta/name, fieldRef: {fieldPath: metadata.name}}
      - {path: uid, fieldRef: {fieldPath: metadata.uid}, mode: 0444}
      - {path: note, fieldRef: {fieldPath: "metadata.annotations['note']"}}
      - {path: cpu, resourceFieldRef: {containerName: c, resource: limits.cpu, divisor: 1m}}
      - {path: mem, resourceFieldRef: {containerName: c, resource: limits.memory, divisor: 1Mi}}
"""


def test_payload() -> None:
    pod = load_pod(POD)
    files = payload(pod, pod.spec.volumes[0], "spec.volumes[0]", NODE)
    assert files == {
        "labels": ('a="1"\nb="2"', 0o600),
        "meta/name": ("p", 0o600),
        "uid": (UID, 0o444),
        "note": ("hi", 0o600),
        "cpu": ("250", 0o600),
        "mem": ("32", 0o600),
    }


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("{path: ../x, fieldRef: {fieldPath: metadata.name}}", r"items\[0\].path: must be a relative path"),
        ("{path: ip, fieldRef: {fieldPath: status.podIP}}", "Unsupported value 'status.podIP' in a volume"),
        ("{path: cpu, resourceFieldRef: {resource: limits.cpu}}", "containerName: must name a container"),
    ],
)
def test_payload_errors(item: str, message: str) -> None:
    text = (
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c, image: i}]\n"
        f"  volumes: [{{name: v, downwardAPI: {{items: [{item}]}}}}]\n"
    )
    pod = load_pod(text)
    with pytest.raises(InvalidArgument, match=message):
        payload(pod, pod.spec.volumes[0], "spec.volumes[0]", NODE)


def test_atomic_writer_layout(tmp_path: Path) -> None:
    now = datetime.datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=datetime.UTC)
    write_atomic(str(tmp_path), {"a": ("1", 0o644), "dir/b": ("2", 0o600)}, now)
    stamp = "..2026_01_02_03_04_05.123456"
    assert os.readlink(tmp_path / "..data") == stamp
    assert os.readlink(tmp_path / "a") == "..data/a" and os.readlink(tmp_path / "dir") == "..data/dir"
    assert (tmp_path / "dir" / "b").read_text() == "2"
    assert (os.stat(tmp_path / stamp / "dir" / "b").st_mode & 0o777) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [stamp, "..data", "a", "dir"]
