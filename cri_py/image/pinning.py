"""Which images are pinned: kubelet's image garbage collection never removes them.

Patterns as CRI-O's `pinned_images` takes them: an exact name (normalized the way a pull would
be: `busybox` is `docker.io/library/busybox:latest`, a digest reference matches the image's repo
digest), `prefix*` (a glob with one trailing star) or `*keyword*`. Globs and keywords match the
fully qualified names ListImages reports. The pause image is always pinned: every pod start needs
it, and cri-py builds it only at start-up.
"""

from __future__ import annotations

from collections.abc import Iterable

from cri_py.errors import InvalidArgument
from cri_py.image import reference as refs


def pinned_pattern_problem(pattern: str) -> str:
    """Why a `pinned_images` entry is unusable ("" when it is fine)."""
    if not pattern:
        return "an empty pattern"
    stars = pattern.count("*")
    if stars == 0:
        try:
            refs.parse(pattern)
        except InvalidArgument as exc:
            return str(exc)
        return ""
    if pattern == "*":
        return "'*' would pin every image; turn off kubelet's image garbage collection instead"
    if stars == 1 and pattern.endswith("*"):
        return ""
    if stars == 2 and pattern.startswith("*") and pattern.endswith("*") and len(pattern) > 2:
        return ""
    return f"{pattern!r}: a * may only end a pattern (prefix*) or enclose a keyword (*keyword*)"


class PinnedImages:
    def __init__(self, patterns: Iterable[str], pause_image: str) -> None:
        self.exact: set[str] = set()
        self.prefixes: list[str] = []
        self.keywords: list[str] = []
        for pattern in [*patterns, pause_image]:
            if pattern.startswith("*") and pattern.endswith("*") and len(pattern) > 1:
                self.keywords.append(pattern[1:-1])
            elif pattern.endswith("*"):
                self.prefixes.append(pattern[:-1])
            else:
                ref = refs.parse(pattern)
                self.exact.add(ref.digested() if ref.digest else ref.tagged())

    def matches(self, names: Iterable[str]) -> bool:
        for name in names:
            if name in self.exact:
                return True
            if any(name.startswith(p) for p in self.prefixes):
                return True
            if any(k in name for k in self.keywords):
                return True
        return False
