"""The images Kubernetes' node e2e suite (test/e2e_node v1.36.3) pulls for its [NodeConformance]
specs, under their upstream names, each with what those specs expect of it.

Read from test/utils/image/manifest.go and the specs that use each image:

- registry.k8s.io/e2e-test-images/agnhost:2.63.0 (and 2.55, the previous version, which
  "back-off timer reset on image update" switches to): the agnhost program of the module
  (test/images/agnhost, built by hack/k8s/build) as /agnhost with `agnhost-2` beside it, over a
  busybox userland (below) plus what its Dockerfile installs and the specs call: bash (probe
  specs run `/bin/bash -c`), curl and netcat-openbsd (the networking specs' node-to-pod
  checks), porter's certificate, /uploads,
  user-defined-in-image (uid 1000) in group-defined-in-image (50000), and /var/registry: the
  fake-registry-server's files, with pause:testing (which "pull from private registry" specs
  pull from it on localhost:5000).
- registry.k8s.io/e2e-test-images/busybox:1.37.0-1: the default container of most specs. The
  upstream image is the official busybox image, upstream's `make defconfig`; this is the same
  build of the busybox release Debian ships (from Debian's source package, without Debian's
  patches): the specs read `data-1=value-1` from `sh -c env` (Debian's ash drops variables
  whose names are no shell identifiers, upstream's passes them on), expect ash's messages
  (`/bin/sh: can't create /file: Read-only file system`) and stamp log lines with nmeter.
- registry.k8s.io/e2e-test-images/nginx:1.15-4: Debian's nginx on port 80 with its pid in
  /var/run/nginx.pid (host PID specs read it), a busybox shell beside it.
- registry.k8s.io/e2e-test-images/nonewprivs:1.4: the module's nonewprivs program, set-user-ID
  root, printing `Effective uid: N`.
- registry.k8s.io/e2e-test-images/nonroot:1.5: busybox with USER 1234.
- registry.k8s.io/e2e-test-images/glibc-dns-testing:2.0.0: the hostname specs run
  `hostname; hostname -f`: Debian's glibc hostname (it resolves through /etc/hosts) and a shell.
- registry.k8s.io/e2e-test-images/sample-device-plugin:1.7: the module's sample device plugin
  (test/images/sample-device-plugin), which the device plugin specs run as a DaemonSet.
- registry.k8s.io/pause:3.10.2: catatonit in pause mode (specs run it as a plain container).

Not buildable offline: registry.k8s.io/e2e-test-images/busybox@sha256:a9155b13..., a digest
only Google's bytes have; image_id_test.go pulls it, and that spec is outside the focus.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from common import (
    PATH_ENV,
    Tree,
    UpstreamImage,
    add_binary,
    busybox_tree,
    debian_package,
    image_of,
    nginx_tree,
    nginx_users,
    upstream_busybox,
    users_files,
)

from cri_py.image import build
from cri_py.image.build import BuiltImage

E2E = "registry.k8s.io/e2e-test-images"
HERE = Path(__file__).resolve().parent
K8S_BUILD = HERE.parent / "k8s" / "build"


def k8s_binary(name: str) -> Path:
    """A program of the pinned Kubernetes module (agnhost, nonewprivs), built when absent."""
    subprocess.run([str(K8S_BUILD), name], check=True, stdout=subprocess.DEVNULL)
    bin_dir = subprocess.run([str(K8S_BUILD), "--bin-dir"], capture_output=True, text=True, check=True)
    return Path(bin_dir.stdout.strip()) / name


def kubernetes_source() -> Path:
    """The module's source tree (for files the images copy, like porter's certificate)."""
    out = subprocess.run(
        ["go", "list", "-m", "-f", "{{.Dir}}", "k8s.io/kubernetes"],
        cwd=K8S_BUILD.parent,
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip())


def pause_image() -> BuiltImage:
    # the upstream pause: sleeps until SIGINT/SIGTERM, reaps children; catatonit -P does that
    return image_of(
        [Tree().copy("pause", Path("/usr/bin/catatonit"), mode=0o755).layer()],
        entrypoint=["/pause", "-P"],
        env=[PATH_ENV],
        stop_signal="SIGINT",
    )


def fake_registry_tree(tree: Tree, name: str, tag: str, image: BuiltImage) -> Tree:
    """agnhost fake-registry-server's layout under /var/registry: a tag file holding the index
    digest, manifests and blobs at <algo>/<first two hex>/<hex>/data."""

    def put(kind: str, digest: str, data: bytes) -> None:
        algo, hexpart = digest.split(":", 1)
        tree.file(f"var/registry/{name}/{kind}/{algo}/{hexpart[:2]}/{hexpart}/data", data)

    index = build.index([(image, {"os": "linux", "architecture": "amd64"})])
    index_digest = build.digest_of(index)
    tree.file(f"var/registry/{name}/manifests/{tag}", index_digest + "\n")
    put("manifests", index_digest, index)
    put("manifests", image.manifest_digest, image.manifest)
    put("blobs", image.config_digest, image.config)
    for layer in image.layers:
        put("blobs", build.digest_of(layer.blob), layer.blob)
    return tree


def agnhost_images(busybox: list[build.BuiltLayer], pause: BuiltImage) -> list[UpstreamImage]:
    agnhost = k8s_binary("agnhost")
    porter = kubernetes_source() / "test" / "images" / "agnhost" / "porter"
    tools = Tree()
    add_binary(tools, "bin/bash", Path("/usr/bin/bash"))
    add_binary(tools, "usr/local/bin/curl", Path("/usr/bin/curl"))
    add_binary(tools, "usr/local/bin/nc", debian_package("netcat-openbsd") / "bin" / "nc.openbsd")
    users_files(
        tools,
        [
            "root:0:0:/root:/bin/sh",
            "daemon:1:1:/usr/sbin:/bin/false",
            "user-defined-in-image:1000:1000:/home/user-defined-in-image:/bin/sh",
            "nobody:65534:65534:/home:/bin/false",
        ],
        [
            "root:0:",
            "daemon:1:",
            "user-defined-in-image:1000:",
            "group-defined-in-image:50000:user-defined-in-image",
            "nogroup:65534:",
        ],
    )
    tools.dir("home/user-defined-in-image", uid=1000, gid=1000)
    tools.dir("uploads")
    tools.copy("localhost.crt", porter / "localhost.crt", mode=0o644)
    tools.copy("localhost.key", porter / "localhost.key", mode=0o644)
    fake_registry_tree(tools, "pause", "testing", pause)
    program = Tree().copy("agnhost", agnhost, mode=0o755).symlink("agnhost-2", "agnhost")
    layers = [*busybox, tools.layer(), program.layer()]
    config = {"entrypoint": ["/agnhost"], "cmd": ["pause"]}
    current = image_of(layers, **config)
    # the previous version differs only in its label: "reset on image update" needs another image
    previous = image_of(layers, labels={"org.opencontainers.image.version": "2.55"}, **config)
    return [UpstreamImage(f"{E2E}/agnhost:2.63.0", current), UpstreamImage(f"{E2E}/agnhost:2.55", previous)]


def busybox_layers() -> list[build.BuiltLayer]:
    """busybox as upstream's image has it: upstream's own build (common.upstream_busybox)."""
    return [busybox_tree(upstream_busybox()).layer()]


def images() -> list[UpstreamImage]:
    busybox = busybox_layers()
    pause = pause_image()
    out = [
        UpstreamImage(f"{E2E}/busybox:1.37.0-1", image_of(busybox, cmd=["sh"])),
        UpstreamImage("registry.k8s.io/pause:3.10.2", pause),
        UpstreamImage(f"{E2E}/nonroot:1.5", image_of(busybox, cmd=["sh"], user="1234")),
    ]
    out += agnhost_images(busybox, pause)

    nginx = [*busybox, nginx_users(Tree()).layer(), nginx_tree("80").layer()]
    out.append(
        UpstreamImage(
            f"{E2E}/nginx:1.15-4", image_of(nginx, cmd=["nginx", "-g", "daemon off;"], stop_signal="SIGQUIT")
        )
    )

    nnp = Tree().copy("usr/local/bin/nnp", k8s_binary("nonewprivs"), mode=0o4755).layer()
    out.append(UpstreamImage(f"{E2E}/nonewprivs:1.4", image_of([*busybox, nnp], cmd=["nnp"])))

    plugin = Tree().copy("sampledeviceplugin", k8s_binary("sample-device-plugin"), mode=0o755).layer()
    out.append(
        UpstreamImage(
            f"{E2E}/sample-device-plugin:1.7",
            image_of([*busybox, plugin], entrypoint=["/sampledeviceplugin", "-alsologtostderr"]),
        )
    )

    hostname = add_binary(Tree(), "usr/local/bin/hostname", Path("/bin/hostname")).layer()
    out.append(UpstreamImage(f"{E2E}/glibc-dns-testing:2.0.0", image_of([*busybox, hostname], cmd=["sh"])))
    return out


def describe() -> str:
    """One line per image: reference and manifest digest (for the run's log)."""
    return json.dumps({item.ref: item.image.manifest_digest for item in images()}, indent=1)
