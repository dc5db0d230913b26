"""Docker image references: parse, validate and normalize the way docker and kubelet do.

`busybox` -> `docker.io/library/busybox:latest`; `host:5000/a/b@sha256:...` keeps its digest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cri_py.errors import InvalidArgument

DEFAULT_DOMAIN = "docker.io"
# the reference domain docker.io is served by this API host
DOCKER_HUB_API_HOST = "registry-1.docker.io"

PATH_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$")
DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
DOMAIN = re.compile(rf"^(?:{DOMAIN_COMPONENT}(?:\.{DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?$")
TAG = re.compile(r"^[\w][\w.-]{0,127}$")
DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$")
_SHA256_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
_HEX64 = re.compile(r"^[a-f0-9]{64}$")
_NAME_TOTAL_MAX = 255


@dataclass(frozen=True)
class Reference:
    domain: str
    path: str  # repository path, e.g. "library/busybox"
    tag: str = ""
    digest: str = ""

    @property
    def repository(self) -> str:
        """Fully qualified repository name: `docker.io/library/busybox`."""
        return f"{self.domain}/{self.path}"

    def tagged(self) -> str:
        """`repo:tag` (empty when pulled by digest only)."""
        return f"{self.repository}:{self.tag}" if self.tag else ""

    def digested(self, digest: str | None = None) -> str:
        d = digest or self.digest
        return f"{self.repository}@{d}" if d else ""

    def __str__(self) -> str:
        out = self.repository
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    @property
    def pull_target(self) -> str:
        """What to ask the registry for: the digest wins over the tag."""
        return self.digest or self.tag or "latest"

    def familiar(self) -> str:
        """The short form users type (`busybox:latest`)."""
        name = self.repository
        if self.domain == DEFAULT_DOMAIN:
            name = self.path.removeprefix("library/") if self.path.count("/") == 1 else self.path
        return name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


def is_short_name(text: str) -> bool:
    """A name without a registry host (`busybox`, `library/busybox:1.36`), as registries.conf means it."""
    first, sep, _ = text.partition("/")
    return not sep or not ("." in first or ":" in first or first == "localhost")


def is_digest(value: str) -> bool:
    return bool(_SHA256_DIGEST.match(value))


def parse(text: str) -> Reference:
    """Parse and normalize; adds `:latest` when neither tag nor digest is given."""
    ref = parse_raw(text)
    if not ref.tag and not ref.digest:
        return Reference(ref.domain, ref.path, "latest", "")
    return ref


def parse_raw(text: str) -> Reference:
    """Parse and normalize the name without adding a default tag."""
    if not text:
        raise InvalidArgument("image reference is empty")
    if text != text.strip() or any(c.isspace() for c in text):
        raise InvalidArgument(f"image reference {text!r} contains whitespace")
    if _HEX64.match(text):
        raise InvalidArgument(
            f"image reference {text!r} is a 64-hex id, not a repository name (use sha256:{text[:12]}...)"
        )
    name, digest = text, ""
    if "@" in text:
        name, digest = text.split("@", 1)
        if not DIGEST.match(digest):
            raise InvalidArgument(f"image reference {text!r}: invalid digest {digest!r}")
        if digest.startswith("sha256:") and not _SHA256_DIGEST.match(digest):
            raise InvalidArgument(f"image reference {text!r}: sha256 digest must be 64 lowercase hex")
    tag = ""
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
        if not TAG.match(tag):
            raise InvalidArgument(f"image reference {text!r}: invalid tag {tag!r}")
    if not name:
        raise InvalidArgument(f"image reference {text!r} has no repository name")
    domain, path = _split_domain(name, text)
    if domain == "index.docker.io":
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = f"library/{path}"
    for component in path.split("/"):
        if not PATH_COMPONENT.match(component):
            if component.lower() != component:
                raise InvalidArgument(f"image reference {text!r}: repository name must be lowercase")
            raise InvalidArgument(f"image reference {text!r}: invalid path component {component!r}")
    if len(f"{domain}/{path}") > _NAME_TOTAL_MAX:
        raise InvalidArgument(f"image reference {text!r}: repository name longer than {_NAME_TOTAL_MAX}")
    return Reference(domain, path, tag, digest)


def _split_domain(name: str, text: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        if not DOMAIN.match(first):
            raise InvalidArgument(f"image reference {text!r}: invalid registry host {first!r}")
        if not rest:
            raise InvalidArgument(f"image reference {text!r} has no repository path")
        return first, rest
    if first != first.lower() and not sep:
        raise InvalidArgument(f"image reference {text!r}: repository name must be lowercase")
    return DEFAULT_DOMAIN, name
