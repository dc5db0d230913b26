"""The images critest v1.36 pulls, under their upstream names, each with what its specs expect.

Read from cri-tools' pkg/validate and pkg/framework (and images/ for the gcr.io ones):

- registry.k8s.io/e2e-test-images/busybox:1.29-2: every default container. The specs run top,
  sleep, pgrep, ps, id, ls, touch, hostname, netstat, ipcs, brctl, ping, mount, dd through
  `sh`; MaskedPaths masks /bin/ls and expects `/bin/sh: ls: Permission denied`.
- registry.k8s.io/e2e-test-images/nginx:1.14-2: a web server on port 80 whose master process
  is titled `nginx: master process ...` and writes /var/run/nginx.pid (HostPID, PodPID,
  ContainerPID, port mapping and port-forward specs), with a shell beside it.
- registry.k8s.io/e2e-test-images/httpd:2.4.39-4: serves port 80, says `httpd` in its log.
- registry.k8s.io/e2e-test-images/nonewprivs:1.3: a set-user-ID root program printing
  `Effective uid: N`, run as uid 1000 with and without no_new_privs.
- gcr.io/k8s-staging-cri-tools/hostnet-nginx-amd64: nginx on port 12003 in the host network
  (bound to 127.0.0.1 here: the specs reach it there and nothing else should).
- gcr.io/k8s-staging-cri-tools/test-image-*: busybox plus a file naming the image; the three
  test-image-tags tags are one image, test-image-tag:test and :all two.
- gcr.io/k8s-staging-cri-tools/test-image-user-*: USER 1002, www-data, 1003:1004, www-data:1004.
- gcr.io/k8s-staging-cri-tools/test-image-predefined-group: user 1000 listed in group 50000.
- registry.k8s.io/pause:3.9 and k8s.gcr.io/pause:3.9: one image under two registries.

Not buildable: test-image-digest@sha256:9700f9a2...: a pull by Google's own manifest digest.
test-image-digest:latest is pushed all the same, so the spec fails on the digest alone.
"""

from __future__ import annotations

from pathlib import Path

from common import (
    PATH_ENV,
    Tree,
    UpstreamImage,
    busybox_tree,
    compile_c,
    image_of,
    nginx_tree,
    nginx_users,
    users_files,
)

from cri_py.image.build import BuiltLayer

E2E = "registry.k8s.io/e2e-test-images"
CRI_TOOLS = "gcr.io/k8s-staging-cri-tools"

NONEWPRIVS_C = r"""
#include <stdio.h>
#include <unistd.h>

/* installed set-user-ID root: prints 0 unless no_new_privs kept the caller's uid */
int main(void)
{
    printf("Effective uid: %d\n", (int)geteuid());
    return 0;
}
"""

HTTPD_FOREGROUND = """#!/bin/sh
# busybox's httpd in the foreground, as httpd's image runs Apache
echo "httpd: serving /usr/local/apache2/htdocs on port 80"
exec httpd -f -v -p 80 -h /usr/local/apache2/htdocs
"""


def _marker(name: str) -> BuiltLayer:
    # cri-tools' images/image-test: busybox with an empty file named after the image
    return Tree().file(name).layer()


def images() -> list[UpstreamImage]:
    busybox = busybox_tree().layer()
    out = [UpstreamImage(f"{E2E}/busybox:1.29-2", image_of([busybox], cmd=["sh"]))]

    nginx_users_layer = nginx_users(Tree()).layer()
    for ref, listen in (
        (f"{E2E}/nginx:1.14-2", "80"),
        (f"{CRI_TOOLS}/hostnet-nginx-amd64:latest", "127.0.0.1:12003"),
    ):
        layers = [busybox, nginx_users_layer, nginx_tree(listen).layer()]
        out.append(
            UpstreamImage(ref, image_of(layers, cmd=["nginx", "-g", "daemon off;"], stop_signal="SIGQUIT"))
        )

    httpd = (
        Tree()
        .file("usr/local/apache2/htdocs/index.html", "<html><body><h1>It works!</h1></body></html>\n")
        .file("usr/local/bin/httpd-foreground", HTTPD_FOREGROUND, mode=0o755)
        .layer()
    )
    out.append(
        UpstreamImage(
            f"{E2E}/httpd:2.4.39-4",
            image_of([busybox, httpd], cmd=["httpd-foreground"], working_dir="/usr/local/apache2"),
        )
    )

    nnp = Tree().copy("usr/local/bin/nnp", compile_c(NONEWPRIVS_C, "nnp"), mode=0o4755).layer()
    out.append(UpstreamImage(f"{E2E}/nonewprivs:1.3", image_of([nnp], entrypoint=["/usr/local/bin/nnp"])))

    for name in ("test-image-1", "test-image-2", "test-image-3", "test-image-latest", "test-image-digest"):
        out.append(
            UpstreamImage(f"{CRI_TOOLS}/{name}:latest", image_of([busybox, _marker(name)], cmd=["sh"]))
        )
    same = image_of([busybox, _marker("same-image")], cmd=["sh"])
    out += [UpstreamImage(f"{CRI_TOOLS}/test-image-tags:{tag}", same) for tag in ("1", "2", "3")]
    for tag in ("test", "all"):
        out.append(
            UpstreamImage(f"{CRI_TOOLS}/test-image-tag:{tag}", image_of([busybox, _marker(tag)], cmd=["sh"]))
        )

    www_data = users_files(
        Tree(),
        [
            "root:0:0:/root:/bin/sh",
            "www-data:33:33:/var/www:/bin/false",
            "nobody:65534:65534:/home:/bin/false",
        ],
        ["root:0:", "www-data:33:", "nogroup:65534:"],
    ).layer()
    for name, user in (
        ("test-image-user-uid", "1002"),
        ("test-image-user-username", "www-data"),
        ("test-image-user-uid-group", "1003:1004"),
        ("test-image-user-username-group", "www-data:1004"),
    ):
        out.append(
            UpstreamImage(f"{CRI_TOOLS}/{name}:latest", image_of([busybox, www_data], cmd=["sh"], user=user))
        )

    predefined = users_files(
        Tree().dir("home/default-user", uid=1000, gid=1000),
        ["root:0:0:/root:/bin/sh", "default-user:1000:1000:/home/default-user:/bin/sh"],
        ["root:0:", "default-user:1000:", "group-defined-in-image:50000:default-user"],
    ).layer()
    out.append(
        UpstreamImage(
            f"{CRI_TOOLS}/test-image-predefined-group:latest",
            image_of([busybox, predefined], cmd=["sh"], user="1000"),
        )
    )

    pause = image_of(
        [Tree().copy("pause", Path("/usr/bin/catatonit"), mode=0o755).layer()],
        entrypoint=["/pause", "-P"],
        env=[PATH_ENV],
        stop_signal="SIGINT",
    )
    out += [UpstreamImage(f"{host}/pause:3.9", pause) for host in ("registry.k8s.io", "k8s.gcr.io")]
    return out
