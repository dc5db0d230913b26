"""Where a name is pulled from, as containers-registries.conf(5) says.

Short names (`busybox`, `team/app:1`) become fully qualified candidates: an `[aliases]` entry if
there is one, else one per `unqualified-search-registries` entry in order. Without any file
setting the search list they mean docker.io, as Docker and Kubernetes document. The name itself
stays the image's name; the longest `[[registry]]` prefix matching it decides where the bytes
come from: its mirrors in order (filtered by `mirror-by-digest-only` / `pull-from-mirror`), then
its `location`. Every such endpoint is checked against the rule of its own physical reference:
a blocked one is never contacted (so `blocked = true` with mirrors means "only the mirrors").
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from cri_py.config.model import RegistriesConf, RegistryRule
from cri_py.errors import FailedPrecondition, InvalidArgument
from cri_py.image.reference import (
    DEFAULT_DOMAIN,
    DOCKER_HUB_API_HOST,
    Reference,
    is_short_name,
    parse,
    parse_raw,
)


class RegistryBlocked(FailedPrecondition):
    """Every endpoint of the reference is blocked: nothing was contacted."""


class ShortNameUnresolved(FailedPrecondition):
    """A short name the configuration does not let cri-py resolve."""


@dataclass(frozen=True)
class PullSource:
    """One endpoint to try: where to connect and which repository to ask it for."""

    ref: Reference  # the physical reference (rewritten onto the mirror or location)
    host: str  # the API host (docker.io is served by registry-1.docker.io)
    insecure: bool  # plain HTTP allowed and TLS certificates not verified
    mirror: bool = False
    scheme: str | None = None  # fixed by a cri-py mirror URL; None = https (then http if allowed)
    url_path: str = ""  # a path in front of /v2/ (cri-py mirror URLs)
    http_fallback: bool = False  # a loopback host may answer plain HTTP after https failed

    @property
    def may_use_http(self) -> bool:
        return self.insecure or self.http_fallback

    def describe(self, scheme: str | None = None) -> str:
        return f"{self.scheme or scheme or 'https'}://{self.host}{self.url_path}"


def match_end(name: str, prefix: str) -> int:
    """Where a prefix match ends in `name` (-1: no match).

    `name` is a fully qualified reference (`host/path[:tag][@digest]`). A prefix must be followed
    by the end or a separator that belongs after it: after a host only `/` (containers/image also
    lets `example.com` match `example.com:5000`, which its own source calls unintended); after a
    repository path also `:` (tag) and `@` (digest). `*.example.com` matches every subdomain.
    """
    if prefix.startswith("*."):
        host = name.split("/", 1)[0]
        hostname = host.rsplit(":", 1)[0] if ":" in host and not host.endswith("]") else host
        suffix = prefix[1:]
        return len(hostname) if hostname.endswith(suffix) and len(hostname) > len(suffix) else -1
    if name == prefix:
        return len(prefix)
    if not name.startswith(prefix) or len(name) <= len(prefix):
        return -1
    separators = "/:@" if "/" in prefix else "/"
    return len(prefix) if name[len(prefix)] in separators else -1


def find_rule(conf: RegistriesConf, name: str) -> RegistryRule | None:
    """The rule with the longest prefix matching `name` (only that one applies)."""
    best: RegistryRule | None = None
    for rule in conf.rules:
        if match_end(name, rule.prefix) >= 0 and (best is None or len(rule.prefix) > len(best.prefix)):
            best = rule
    return best


def describe_rule(rule: RegistryRule) -> str:
    return f"[[registry]] prefix={rule.prefix!r} in {rule.source or 'the default configuration'}"


def pull_sources(conf: RegistriesConf, ref: Reference) -> list[PullSource]:
    """Endpoints in the order to try them; raises RegistryBlocked when none may be contacted."""
    name = str(ref)
    rule = find_rule(conf, name) or RegistryRule(prefix=ref.repository, location=ref.repository)
    end = match_end(name, rule.prefix)
    digested = bool(ref.digest)
    candidates: list[PullSource] = []
    for mirror in rule.mirrors:
        if rule.mirror_by_digest_only and not digested:
            continue
        if mirror.pull_from_mirror == "digest-only" and not digested:
            continue
        if mirror.pull_from_mirror == "tag-only" and digested:
            continue
        physical = _rewrite(name, end, mirror.location)
        candidates.append(_source(physical, mirror.insecure, True, mirror.scheme, mirror.url_path))
    if not rule.mirror_only:
        physical = _rewrite(name, end, rule.location) if rule.location else ref
        candidates.append(_source(physical, rule.insecure, False, None, ""))
    allowed: list[PullSource] = []
    refused: list[str] = []
    for source in candidates:
        blocking = find_rule(conf, str(source.ref))
        if blocking is not None and blocking.blocked:
            refused.append(f"{source.ref.domain} is blocked by {describe_rule(blocking)}")
            continue
        allowed.append(source)
    if not allowed:
        if refused:
            raise RegistryBlocked(f"pulling {ref} is refused: " + "; ".join(refused))
        raise RegistryBlocked(f"pulling {ref}: {describe_rule(rule)} leaves no endpoint to try")
    return allowed


def _rewrite(name: str, end: int, location: str) -> Reference:
    rewritten = location + name[end:]
    try:
        return parse_raw(rewritten)
    except InvalidArgument as exc:
        raise InvalidArgument(f"{name} rewritten onto {location!r} is no valid reference: {exc}") from exc


def _source(ref: Reference, insecure: bool, mirror: bool, scheme: str | None, url_path: str) -> PullSource:
    host = DOCKER_HUB_API_HOST if ref.domain == DEFAULT_DOMAIN and scheme is None else ref.domain
    return PullSource(
        ref=ref,
        host=host,
        insecure=insecure,
        mirror=mirror,
        scheme=scheme,
        url_path=url_path,
        http_fallback=is_loopback(host),
    )


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


# short names


def _split_short(text: str) -> tuple[str, str]:
    """`team/app:1` -> ("team/app", ":1"): the repository path and what follows it."""
    probe = parse_raw(f"short-name.invalid/{text}")
    suffix = (f":{probe.tag}" if probe.tag else "") + (f"@{probe.digest}" if probe.digest else "")
    return probe.path, suffix


def pull_candidates(conf: RegistriesConf, text: str) -> list[Reference]:
    """The fully qualified references a pull of `text` tries, in order."""
    if not is_short_name(text):
        return [parse(text)]
    path, suffix = _split_short(text)
    alias = conf.aliases.get(path)
    if alias:
        return [parse(alias + suffix)]
    if conf.search is None:
        return [parse(text)]  # docker.io, with library/ for one-component names
    if not conf.search:
        raise ShortNameUnresolved(
            f"short name {text!r} matches no alias and unqualified-search-registries is empty"
            f" in {conf.search_source}"
        )
    candidates = [parse(f"{registry}/{text}") for registry in conf.search]
    if len(candidates) > 1 and conf.short_name_mode == "enforcing":
        raise ShortNameUnresolved(
            f"short name {text!r} is ambiguous ({', '.join(c.repository for c in candidates)}):"
            " short-name-mode is enforcing and a runtime cannot prompt; add an [aliases] entry"
            " or use a fully qualified name"
        )
    return candidates


def local_candidates(conf: RegistriesConf, text: str) -> list[Reference]:
    """The names a short name may be stored under (lookups ignore short-name-mode, as CRI-O does)."""
    if not is_short_name(text):
        return [parse_raw(text)]
    path, suffix = _split_short(text)
    alias = conf.aliases.get(path)
    out = [parse_raw(alias + suffix)] if alias else []
    if conf.search is None:
        out.append(parse_raw(text))
    else:
        out += [parse_raw(f"{registry}/{text}") for registry in conf.search]
    return out
