"""Shared helpers for the images the conformance suites pull under their exact upstream names.

Each consumer module (critest.py, e2e_node.py, node.py) has an `images()` function returning
`UpstreamImage`s: an upstream reference (`registry.k8s.io/e2e-test-images/busybox:1.29-2`) and an
image built here from Debian's binaries with the behaviour the suite's specs expect of it. `push`
stores them in a local registry under the reference's path (`e2e-test-images/busybox:1.29-2`), and
`mirror_config` is the cri-py `registries:` section that sends each upstream host to it.

Everything is byte-reproducible on one machine (fixed owners and mtimes, gzip without a time):
the same Debian packages give the same digests.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from cri_py.image import build
from cri_py.image.build import BuiltImage, BuiltLayer, Entry
from cri_py.image.push import Pusher

CACHE = Path(os.environ.get("CRI_PY_CACHE", "/var/cache/cri-py"))
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ImageBuildError(Exception):
    pass


# --- a layer's file tree ----------------------------------------------------------------------


class Tree:
    """The files of one layer; parent directories are added on the way (0755, root)."""

    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}

    def _parents(self, name: str) -> None:
        for parent in reversed(PurePosixPath(name).parents[:-1]):
            key = str(parent)
            if key not in self._entries:
                self._entries[key] = Entry(key, "dir", mode=0o755)

    def add(self, entry: Entry) -> Tree:
        name = entry.name.strip("/")
        entry.name = name
        self._parents(name)
        self._entries[name] = entry
        return self

    def dir(self, name: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> Tree:
        return self.add(Entry(name, "dir", mode=mode, uid=uid, gid=gid))

    def file(self, name: str, data: bytes | str = b"", mode: int = 0o644, uid: int = 0, gid: int = 0) -> Tree:
        payload = data.encode() if isinstance(data, str) else data
        return self.add(Entry(name, data=payload, mode=mode, uid=uid, gid=gid))

    def copy(self, name: str, source: Path, mode: int | None = None) -> Tree:
        real = source.resolve()
        return self.add(
            Entry(name, source=real, mode=mode if mode is not None else real.stat().st_mode & 0o7777)
        )

    def symlink(self, name: str, target: str) -> Tree:
        return self.add(Entry(name, "symlink", linkname=target, mode=0o777))

    def hardlink(self, name: str, target: str) -> Tree:
        return self.add(Entry(name, "hardlink", linkname=target.strip("/"), mode=0o755))

    def layer(self) -> BuiltLayer:
        # in the order added: parents come first (added on the way), hard link targets before
        # their links, and a directory re-added later keeps its first place
        return build.layer(list(self._entries.values()))


def users_files(tree: Tree, passwd: Iterable[str], group: Iterable[str]) -> Tree:
    """/etc/passwd and /etc/group from `name:uid:gid:home:shell` and `name:gid:members` lines."""
    passwd_lines = []
    for line in passwd:
        name, uid, gid, home, shell = line.split(":")
        passwd_lines.append(f"{name}:x:{uid}:{gid}:{name}:{home}:{shell}\n")
    group_lines = []
    for line in group:
        name, gid, members = line.split(":")
        group_lines.append(f"{name}:x:{gid}:{members}\n")
    tree.file("etc/passwd", "".join(passwd_lines))
    tree.file("etc/group", "".join(group_lines))
    return tree


# --- Debian's binaries ------------------------------------------------------------------------


def _candidate_version(package: str) -> str:
    out = subprocess.run(["apt-cache", "policy", package], capture_output=True, text=True, check=False).stdout
    match = re.search(r"Candidate:\s*(\S+)", out)
    if not match or match.group(1) == "(none)":
        raise ImageBuildError(f"Debian package {package!r} has no candidate version (apt-get update?)")
    return match.group(1)


def debian_package(package: str) -> Path:
    """The files of a Debian package (`apt-get download`, unpacked, not installed), cached by version."""
    try:
        version = _candidate_version(package)
    except ImageBuildError:
        subprocess.run(["apt-get", "update", "-q"], check=True, capture_output=True)
        version = _candidate_version(package)
    root = CACHE / "debs" / f"{package}_{version.replace(':', '%3a')}"
    if root.is_dir():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent) as tmp:
        # apt's sandbox user cannot write into a root-only directory; give it one of its own
        os.chmod(tmp, 0o755)
        fetched = subprocess.run(
            ["apt-get", "download", "-q", f"{package}={version}"], cwd=tmp, capture_output=True, text=True
        )
        debs = list(Path(tmp).glob("*.deb"))
        if fetched.returncode != 0 or len(debs) != 1:
            raise ImageBuildError(f"apt-get download {package}={version}: {fetched.stderr.strip()[-500:]}")
        unpacked = Path(tmp) / "root"
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(unpacked)], check=True)
        unpacked.rename(root)
    return root


def debian_source(package: str) -> Path:
    """A Debian source package's files (.dsc, the pristine upstream tarball, Debian's changes):
    `apt-get source --download-only` for this machine's release, through an apt state of its own
    under the cache (a deb-src list of deb.debian.org; the host's sources and lists stay as they
    are). The first fetch is kept: later builds use it without the network."""
    root = CACHE / "debsrc" / package
    if root.is_dir() and any(root.glob("*.dsc")):
        return root
    release = re.search(r"^VERSION_CODENAME=(\S+)$", Path("/etc/os-release").read_text(), re.M)
    if release is None:
        raise ImageBuildError("no VERSION_CODENAME in /etc/os-release: not a Debian release")
    state = CACHE / "apt-src"
    for sub in ("lists/partial", "archives/partial"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    sources = state / "sources.list"
    sources.write_text(
        "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
        f"http://deb.debian.org/debian {release.group(1)} main\n"
    )
    options = [
        f"-oDir::Etc::SourceList={sources}",
        f"-oDir::Etc::SourceParts={state}/none",
        f"-oDir::State::Lists={state}/lists",
        f"-oDir::Cache={state}",
        "-oDebug::NoLocking=1",
    ]
    subprocess.run(["apt-get", *options, "-q", "update"], check=True, capture_output=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent) as tmp:
        os.chmod(tmp, 0o755)
        fetched = subprocess.run(
            ["apt-get", *options, "-q", "source", "--download-only", package],
            cwd=tmp,
            capture_output=True,
            text=True,
        )
        if fetched.returncode != 0 or not list(Path(tmp).glob("*.dsc")):
            raise ImageBuildError(f"apt-get source {package}: {fetched.stderr.strip()[-500:]}")
        Path(tmp).rename(root)
    return root


def upstream_busybox() -> Path:
    """busybox as upstream builds it (`make defconfig`, linked statically), from the pristine
    upstream tarball of Debian's source package: the official busybox image is that, and the
    specs rely on what upstream's ash does and Debian's patches change (Debian's ash drops
    environment variables whose names are no shell identifiers; upstream's passes them on),
    and on applets Debian leaves out (nmeter, pgrep, ipcs). Cached by version."""
    source = debian_source("busybox")
    tarball = next(source.glob("busybox_*.orig.tar.*"))
    version = tarball.name.removeprefix("busybox_").split(".orig.tar")[0]
    out = CACHE / "upstream-images" / "bin" / f"busybox-{version}-defconfig"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(tarball) as archive:
            archive.extractall(tmp, filter="data")
        tree = Path(tmp) / f"busybox-{version}"
        subprocess.run(["make", "defconfig"], cwd=tree, check=True, capture_output=True)
        config = tree / ".config"
        config.write_text(config.read_text().replace("# CONFIG_STATIC is not set", "CONFIG_STATIC=y"))
        built = subprocess.run(
            ["make", f"-j{os.cpu_count() or 1}", "busybox"], cwd=tree, capture_output=True, text=True
        )
        if built.returncode != 0:
            raise ImageBuildError(f"building busybox {version}: {built.stdout[-1500:]}{built.stderr[-1500:]}")
        shutil.move(tree / "busybox", out)
    return out


def shared_libraries(binary: Path) -> list[tuple[str, Path]]:
    """(path in the image, host file) for every library `binary` loads, the loader included,
    as this machine resolves them; none for a static binary."""
    proc = subprocess.run(["ldd", str(binary)], capture_output=True, text=True)
    if "not a dynamic executable" in proc.stdout + proc.stderr:
        return []
    proc.check_returncode()
    out = proc.stdout
    libs: list[tuple[str, Path]] = []
    for line in out.splitlines():
        line = line.strip()
        if "=>" in line:
            path = line.split("=>", 1)[1].split("(")[0].strip()
        else:
            path = line.split("(")[0].strip()
        if path.startswith("/"):
            libs.append((path, Path(path)))
    return libs


def add_binary(tree: Tree, name: str, source: Path, mode: int = 0o755) -> Tree:
    """A dynamically linked binary and the libraries it needs."""
    tree.copy(name, source, mode)
    for image_path, host_path in shared_libraries(source):
        tree.copy(image_path, host_path, 0o755)
    return tree


def compile_c(source: str, name: str) -> Path:
    """A static binary from a small C program (gcc, glibc's libc.a), cached by its source."""
    import hashlib

    key = hashlib.sha256(source.encode()).hexdigest()[:16]
    out = CACHE / "upstream-images" / "bin" / f"{name}-{key}"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / f"{name}.c"
        src.write_text(source)
        binary = Path(tmp) / name
        subprocess.run(
            ["gcc", "-static", "-Os", "-s", "-Wl,--build-id=none", "-o", str(binary), str(src)],
            check=True,
            capture_output=True,
        )
        shutil.move(binary, out)
    return out


# --- busybox with the tools the specs call ----------------------------------------------------

# Debian's busybox has neither pgrep nor ipcs; these stand in with the same output.
PGREP = r"""#!/bin/sh
# pgrep PATTERN: the pids of the processes whose name matches the extended regular expression
[ $# = 1 ] || { echo "usage: pgrep PATTERN" >&2; exit 2; }
procs=""
for dir in /proc/[0-9]*; do
    pid=${dir#/proc/}
    [ "$pid" = "$$" ] && continue
    read -r comm 2>/dev/null < "$dir/comm" || continue
    procs="$procs$pid $comm
"
done
printf '%s' "$procs" | awk -v pattern="$1" '{ pid = $1; sub(/^[0-9]+ /, "") }
    $0 ~ pattern { print pid; found = 1 } END { exit !found }'
"""

# busybox's own ipcs asks the kernel (shmctl SHM_INFO, then SHM_STAT for each index), not
# /proc/sysvipc/shm, which gVisor does not have: a stand-in that read the file failed there
IPCS_C = r"""
#include <stdio.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>

/* ipcs [-m]: the System V shared memory segments of this IPC namespace, as busybox lists them */
int main(int argc, char **argv) {
    if (argc > 2 || (argc == 2 && strcmp(argv[1], "-m"))) {
        fprintf(stderr, "ipcs: only -m is supported\n");
        return 1;
    }
    struct shm_info info;
    int maxid = shmctl(0, SHM_INFO, (struct shmid_ds *)&info);
    printf("\n------ Shared Memory Segments --------\n");
    printf("key        shmid      owner      perms      bytes      nattch     status\n");
    for (int index = 0; index <= maxid; index++) {
        struct shmid_ds seg;
        int id = shmctl(index, SHM_STAT, &seg);
        if (id < 0)
            continue;
        printf("0x%08x %-10d %-10u %-10o %-10lu %-10ld\n", (unsigned)seg.shm_perm.__key, id,
               (unsigned)seg.shm_perm.uid, (unsigned)seg.shm_perm.mode & 0777,
               (unsigned long)seg.shm_segsz, (long)seg.shm_nattch);
    }
    printf("\n");
    return 0;
}
"""


def busybox_binary() -> Path:
    """Debian's dynamically linked busybox: its shell runs commands through PATH, so a masked
    /bin/ls is really what `sh -c ls` executes (the static build runs its applets directly)."""
    return debian_package("busybox") / "bin" / "busybox"


def busybox_tree(binary: Path | None = None) -> Tree:
    """A minimal busybox system: every applet a hard link in /bin (masking one path masks only
    that applet), the stand-ins above for applets the build lacks, a root and nobody user, the
    usual top-level dirs. `binary` defaults to Debian's busybox (busybox_binary)."""
    binary = binary or busybox_binary()
    applets = set(
        subprocess.run([str(binary), "--list"], capture_output=True, text=True, check=True).stdout.split()
    )
    tree = Tree()
    add_binary(tree, "bin/busybox", binary)
    for applet in sorted(applets - {"busybox"}):
        tree.hardlink(f"bin/{applet}", "bin/busybox")
    if "pgrep" not in applets:
        tree.file("bin/pgrep", PGREP, mode=0o755)
    if "ipcs" not in applets:
        tree.copy("bin/ipcs", compile_c(IPCS_C, "ipcs"), mode=0o755)
    tree.symlink("sbin", "bin")
    tree.dir("usr")
    tree.symlink("usr/bin", "../bin")
    tree.symlink("usr/sbin", "../bin")
    tree.dir("usr/local/bin")
    users_files(
        tree,
        ["root:0:0:/root:/bin/sh", "daemon:1:1:/usr/sbin:/bin/false", "nobody:65534:65534:/home:/bin/false"],
        ["root:0:", "daemon:1:", "nogroup:65534:"],
    )
    tree.file("etc/hostname", "busybox\n")
    for name, mode in (("root", 0o700), ("tmp", 0o1777), ("var", 0o755), ("var/run", 0o755), ("home", 0o755)):
        tree.dir(name, mode)
    for name in ("proc", "sys", "dev"):
        tree.dir(name, 0o555 if name != "dev" else 0o755)
    return tree


# --- nginx ------------------------------------------------------------------------------------

NGINX_CONF = """user www-data;
worker_processes 1;
pid /var/run/nginx.pid;
error_log /var/log/nginx/error.log warn;

events {{
    worker_connections 64;
}}

http {{
    access_log /var/log/nginx/access.log;
    types {{
        text/html html;
    }}
    default_type application/octet-stream;
    server {{
        listen {listen};
        root /usr/share/nginx/html;
        index index.html;
    }}
}}
"""


def nginx_tree(listen: str) -> Tree:
    """Debian's nginx serving a welcome page on `listen`: a master process (whose title reads
    `nginx: master process ...`) with its pid in /var/run/nginx.pid, logs on the container's
    stdout and stderr."""
    binary = debian_package("nginx") / "usr" / "sbin" / "nginx"
    tree = Tree()
    add_binary(tree, "usr/sbin/nginx", binary)
    tree.file("etc/nginx/nginx.conf", NGINX_CONF.format(listen=listen))
    tree.file(
        "usr/share/nginx/html/index.html",
        "<!DOCTYPE html>\n<html><head><title>Welcome to nginx!</title></head>\n"
        "<body><h1>Welcome to nginx!</h1></body></html>\n",
    )
    tree.dir("var/log/nginx")
    tree.symlink("var/log/nginx/access.log", "/dev/stdout")
    tree.symlink("var/log/nginx/error.log", "/dev/stderr")
    tree.dir("var/lib/nginx")
    tree.dir("var/run")
    return tree


def nginx_users(tree: Tree) -> Tree:
    return users_files(
        tree,
        [
            "root:0:0:/root:/bin/sh",
            "www-data:33:33:/var/www:/bin/false",
            "nobody:65534:65534:/home:/bin/false",
        ],
        ["root:0:", "www-data:33:", "nogroup:65534:"],
    )


# --- references, the registry, the mirrors ----------------------------------------------------


@dataclass(frozen=True)
class UpstreamImage:
    ref: str  # the exact upstream name: host/path:tag
    image: BuiltImage

    @property
    def host(self) -> str:
        return self.ref.split("/", 1)[0]

    @property
    def repository(self) -> str:
        return self.ref.split("/", 1)[1].rsplit(":", 1)[0]

    @property
    def tag(self) -> str:
        return self.ref.rsplit(":", 1)[1]


def image_of(layers: list[BuiltLayer], **config: object) -> BuiltImage:
    config.setdefault("env", [PATH_ENV])
    return build.image(layers, **config)  # type: ignore[arg-type]


def check_names(images: list[UpstreamImage]) -> None:
    """Every reference is fully qualified and tagged, and no two hosts put different images
    under one repository path and tag of the shared registry."""
    seen: dict[tuple[str, str], UpstreamImage] = {}
    for item in images:
        first = item.ref.split("/", 1)[0]
        if "/" not in item.ref or not ("." in first or ":" in first) or ":" not in item.ref.split("/")[-1]:
            raise ImageBuildError(f"{item.ref}: name the registry host and the tag")
        key = (item.repository, item.tag)
        other = seen.get(key)
        if other is not None and other.image.manifest_digest != item.image.manifest_digest:
            raise ImageBuildError(f"{item.ref} and {other.ref} differ but share {key[0]}:{key[1]}")
        seen[key] = item


def push(registry: str, images: list[UpstreamImage]) -> dict[str, str]:
    """Push to the registry at host:port (plain http); returns reference -> manifest digest."""
    check_names(images)
    digests: dict[str, str] = {}
    with Pusher(f"http://{registry}") as pusher:
        for item in images:
            digests[item.ref] = pusher.image(item.repository, item.tag, item.image)
    return digests


def mirror_config(registry: str, images: list[UpstreamImage]) -> dict[str, dict[str, object]]:
    """cri-py's `registries:` section: every upstream host of `images` served by `registry` only."""
    hosts = sorted({item.host for item in images})
    section: dict[str, dict[str, object]] = {
        host: {"mirrors": [f"http://{registry}"], "mirror_only": True} for host in hosts
    }
    section[registry] = {"insecure": True}
    return section
