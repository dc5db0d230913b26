"""The images a one-node cluster (hack/node) needs under upstream names beyond busybox.

- registry.k8s.io/pause:3.10: the sandbox image containerd runs for every pod when it is the
  node's runtime instead of cri-py (hack/node up --runtime containerd, for comparisons):
  Debian's catatonit in pause mode, as cri-py's own infra process.
"""

from __future__ import annotations

from pathlib import Path

from common import PATH_ENV, Tree, UpstreamImage, image_of

PAUSE = "registry.k8s.io/pause:3.10"


def images() -> list[UpstreamImage]:
    pause = image_of(
        [Tree().copy("pause", Path("/usr/bin/catatonit"), mode=0o755).layer()],
        entrypoint=["/pause", "-P"],
        env=[PATH_ENV],
        stop_signal="SIGINT",
    )
    return [UpstreamImage(PAUSE, pause)]
