"""Names, ids and maps a request stores: Kubernetes' character sets and limits.

The rules are k8s.io/apimachinery's (pkg/util/validation, pkg/api/validation): a pod name is a
DNS-1123 subdomain of at most 253 characters, a namespace and a container name DNS-1123
labels, annotations at most 256 KiB in all. Two allowances keep what real clients send:
capital letters, and container names up to the subdomain length. kubelet sends only lower
case and labels of at most 63, but cri-tools' critest (SIG Node's CRI conformance suite) names
pods and containers like `PodSandbox-for-...-<uuid>` and
`container-with-RunAsGroup-without-RunAsUser-test-<uuid>` (85 characters); containerd and CRI-O
accept those, and so do we.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from cri_py.errors import InvalidArgument

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
# a pod's annotations together (keys and values), Kubernetes' TotalAnnotationSizeLimitB
TOTAL_ANNOTATIONS_MAX = 256 * 1024
# kubelet's attempt is a restart count, an int32 in the Kubernetes API
ATTEMPT_MAX = 2**31 - 1

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL = re.compile(rf"^{_LABEL}$", re.IGNORECASE)
_DNS1123_SUBDOMAIN = re.compile(rf"^{_LABEL}(\.{_LABEL})*$", re.IGNORECASE)
# API servers give UUIDs, kubelet gives static pods an md5 in hex; a static pod's manifest may
# set its own (kubelet uses it in its own paths, so never a separator)
_UID = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")


def _named(field: str, value: str, pattern: re.Pattern[str], limit: int, what: str) -> None:
    if not value:
        raise InvalidArgument(f"{field}: is required")
    if len(value) > limit:
        raise InvalidArgument(f"{field}: must be at most {limit} characters (got {len(value)})")
    if not pattern.match(value):
        shown = value if len(value) <= 80 else value[:77] + "..."
        raise InvalidArgument(f"{field}: {shown!r} is not a valid {what}")


def pod_name(field: str, value: str) -> None:
    _named(field, value, _DNS1123_SUBDOMAIN, DNS1123_SUBDOMAIN_MAX, "DNS-1123 subdomain")


def namespace(field: str, value: str) -> None:
    _named(field, value, _DNS1123_LABEL, DNS1123_LABEL_MAX, "DNS-1123 label")


def container_name(field: str, value: str) -> None:
    _named(field, value, _DNS1123_LABEL, DNS1123_SUBDOMAIN_MAX, "DNS-1123 label")


def uid(field: str, value: str) -> None:
    _named(field, value, _UID, DNS1123_SUBDOMAIN_MAX, "uid (letters, digits, '-', '_', '.')")


def attempt(field: str, value: int) -> None:
    if value > ATTEMPT_MAX:
        raise InvalidArgument(f"{field}: must be at most {ATTEMPT_MAX} (got {value})")


def map_size(field: str, values: Mapping[str, str]) -> None:
    """Keys and values together, counted in bytes as Kubernetes counts annotations."""
    total = 0
    for key, value in values.items():
        total += len(key.encode()) + len(value.encode())
    if total > TOTAL_ANNOTATIONS_MAX:
        raise InvalidArgument(f"{field}: {total} bytes in all, more than {TOTAL_ANNOTATIONS_MAX}")
