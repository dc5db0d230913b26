"""Read containers-registries.conf(5) and its drop-ins, as CRI-O and podman do.

The main file (version 2, or the deprecated version 1 lists), then `<file>.d/*.conf` in lexical
order, each in version 2 only. A later file replaces a `[[registry]]` of the same prefix,
`unqualified-search-registries` and `short-name-mode` when it sets them, and merges `[aliases]`
(an empty value erases one). Within one file the first table of a prefix wins, as in
containers/image. Every problem is a ConfigError naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path
from typing import Any

from cri_py.config.errors import ConfigError
from cri_py.config.model import (
    PULL_FROM_MIRROR,
    SHORT_NAME_MODES,
    Mirror,
    RegistriesConf,
    RegistryRule,
)
from cri_py.errors import InvalidArgument
from cri_py.image.reference import DOMAIN, DOMAIN_COMPONENT, is_short_name, parse_raw

_TOP_KEYS = {
    "unqualified-search-registries",
    "registry",
    "short-name-mode",
    "aliases",
    "credential-helpers",
    "additional-layer-store-auth-helper",
}
_REGISTRY_KEYS = {"prefix", "location", "insecure", "blocked", "mirror-by-digest-only", "mirror"}
_MIRROR_KEYS = {"location", "insecure", "pull-from-mirror"}
_V1_KEYS = {"search", "insecure", "block"}
AUTH_FILE_HELPER = "containers-auth.json"

_WILDCARD = re.compile(rf"^\*\.{DOMAIN_COMPONENT}(?:\.{DOMAIN_COMPONENT})*$")


@dataclasses.dataclass
class _File:
    """One file's settings before the merge; None = the file does not set it."""

    path: str
    rules: list[RegistryRule]
    search: tuple[str, ...] | None = None
    short_name_mode: str | None = None
    aliases: dict[str, str] = dataclasses.field(default_factory=dict)
    ignored: list[str] = dataclasses.field(default_factory=list)


def dropin_dir(main: Path) -> Path:
    return main.with_name(main.name + ".d")


def registries_conf_sources(main: Path | None) -> list[Path]:
    """The files read, in merge order (the main file only when it exists)."""
    if main is None:
        return []
    files = [main] if main.is_file() else []
    directory = dropin_dir(main)
    if directory.is_dir():
        files += sorted(p for p in directory.iterdir() if p.name.endswith(".conf") and p.is_file())
    return files


def read_registries_conf(main: Path | None) -> RegistriesConf:
    merged = RegistriesConf()
    rules: dict[str, RegistryRule] = {}
    aliases: dict[str, str] = {}
    ignored: list[str] = []
    files: list[str] = []
    for path in registries_conf_sources(main):
        parsed = _read_file(path, dropin=path != main)
        files.append(str(path))
        for rule in parsed.rules:
            rules[rule.prefix] = rule
        if parsed.search is not None:
            merged = dataclasses.replace(merged, search=parsed.search, search_source=parsed.path)
        if parsed.short_name_mode is not None:
            merged = dataclasses.replace(merged, short_name_mode=parsed.short_name_mode)
        for name, value in parsed.aliases.items():
            if value:
                aliases[name] = value
            else:
                aliases.pop(name, None)
        ignored += parsed.ignored
    return dataclasses.replace(
        merged,
        rules=tuple(rules[p] for p in sorted(rules)),
        aliases=aliases,
        files=tuple(files),
        ignored=tuple(ignored),
    )


def _read_file(path: Path, dropin: bool) -> _File:
    source = str(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(source, "", f"cannot read: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(source, "", f"invalid TOML: {exc}") from None
    v1 = data.get("registries")
    if v1 is not None:
        if dropin:
            raise ConfigError(source, "registries", "drop-in files must use the version 2 format")
        if set(data) - {"registries"}:
            raise ConfigError(source, "registries", "version 1 and version 2 settings are mixed")
        return _version1(source, v1)
    for key in data:
        if key not in _TOP_KEYS:
            raise ConfigError(source, key, "unknown key")
    out = _File(source, _rules(source, data.get("registry", [])))
    if "unqualified-search-registries" in data:
        out.search = _search_registries(source, data["unqualified-search-registries"])
    mode = data.get("short-name-mode", "")
    if not isinstance(mode, str) or mode not in ("", *SHORT_NAME_MODES):
        raise ConfigError(source, "short-name-mode", f"must be one of {', '.join(SHORT_NAME_MODES)}")
    out.short_name_mode = mode or None
    out.aliases = _aliases(source, data.get("aliases", {}))
    helpers = data.get("credential-helpers")
    if helpers is not None:
        if not isinstance(helpers, list) or not all(isinstance(h, str) for h in helpers):
            raise ConfigError(source, "credential-helpers", "expected a list of strings")
        others = [h for h in helpers if h != AUTH_FILE_HELPER]
        if others:
            out.ignored.append(
                f"{source}: credential-helpers {others}: cri-py runs no credential helpers (see auth_file)"
            )
    if data.get("additional-layer-store-auth-helper"):
        out.ignored.append(
            f"{source}: additional-layer-store-auth-helper: cri-py has no additional layer store"
        )
    return out


def _version1(source: str, v1: Any) -> _File:
    if not isinstance(v1, dict):
        raise ConfigError(source, "registries", "expected a table")
    lists: dict[str, list[str]] = {}
    for key, table in v1.items():
        if key not in _V1_KEYS:
            raise ConfigError(source, f"registries.{key}", "unknown key")
        if not isinstance(table, dict) or set(table) - {"registries"}:
            raise ConfigError(source, f"registries.{key}", "expected a table with `registries` only")
        lists[key] = _string_list(source, f"registries.{key}.registries", table.get("registries", []))
    out = _File(source, [])
    if "search" in lists:
        out.search = _search_registries(source, lists["search"])
    hosts: dict[str, RegistryRule] = {}
    for host in lists.get("block", []):
        location = _location(source, "registries.block", host)
        hosts[location] = RegistryRule(prefix=location, location=location, blocked=True, source=source)
    for host in lists.get("insecure", []):
        location = _location(source, "registries.insecure", host)
        rule = hosts.get(location) or RegistryRule(prefix=location, location=location, source=source)
        hosts[location] = dataclasses.replace(rule, insecure=True)
    out.rules = list(hosts.values())
    return out


def _rules(source: str, tables: Any) -> list[RegistryRule]:
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ConfigError(source, "registry", "expected an array of [[registry]] tables")
    rules: list[RegistryRule] = []
    seen: set[str] = set()
    for i, table in enumerate(tables):
        key = f"registry[{i}]"
        for name in table:
            if name == "pull-from-mirror":
                raise ConfigError(source, f"{key}.{name}", "is a [[registry.mirror]] setting")
            if name == "proxy":
                raise ConfigError(source, f"{key}.proxy", "per-registry proxies are not supported by cri-py")
            if name not in _REGISTRY_KEYS:
                raise ConfigError(source, f"{key}.{name}", "unknown key")
        location = table.get("location", "")
        prefix = table.get("prefix", "")
        if not isinstance(location, str) or not isinstance(prefix, str):
            raise ConfigError(source, key, "prefix and location must be strings")
        if location:
            location = _location(source, f"{key}.location", location)
        if prefix:
            prefix = _prefix(source, f"{key}.prefix", prefix)
        elif location:
            prefix = location
        else:
            raise ConfigError(source, key, "neither prefix nor location is set")
        if not location and not prefix.startswith("*."):
            raise ConfigError(source, f"{key}.location", "is required unless prefix is *.domain")
        by_digest = _bool(source, f"{key}.mirror-by-digest-only", table.get("mirror-by-digest-only", False))
        mirrors = _mirrors(source, key, table.get("mirror", []), by_digest)
        rule = RegistryRule(
            prefix=prefix,
            location=location,
            insecure=_bool(source, f"{key}.insecure", table.get("insecure", False)),
            blocked=_bool(source, f"{key}.blocked", table.get("blocked", False)),
            mirror_by_digest_only=by_digest,
            mirrors=mirrors,
            source=source,
        )
        if prefix in seen:
            continue  # containers/image: the first table of a prefix wins within a file
        seen.add(prefix)
        rules.append(rule)
    _check_conflicts(source, rules)
    return rules


def _check_conflicts(source: str, rules: list[RegistryRule]) -> None:
    """One location named by several tables must agree on insecure and blocked."""
    by_location: dict[str, RegistryRule] = {}
    for rule in rules:
        key = rule.location or rule.prefix
        other = by_location.setdefault(key, rule)
        for flag in ("insecure", "blocked"):
            if getattr(other, flag) != getattr(rule, flag):
                raise ConfigError(
                    source, "registry", f"{key} is defined several times with conflicting {flag}"
                )


def _mirrors(source: str, key: str, tables: Any, by_digest: bool) -> tuple[Mirror, ...]:
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ConfigError(source, f"{key}.mirror", "expected an array of [[registry.mirror]] tables")
    out = []
    for j, table in enumerate(tables):
        mkey = f"{key}.mirror[{j}]"
        for name in table:
            if name == "proxy":
                raise ConfigError(source, f"{mkey}.proxy", "per-registry proxies are not supported by cri-py")
            if name not in _MIRROR_KEYS:
                raise ConfigError(source, f"{mkey}.{name}", "unknown key")
        location = table.get("location", "")
        if not isinstance(location, str) or not location:
            raise ConfigError(source, f"{mkey}.location", "is required")
        usage = table.get("pull-from-mirror", "")
        if not isinstance(usage, str) or usage not in ("", *PULL_FROM_MIRROR):
            raise ConfigError(
                source, f"{mkey}.pull-from-mirror", f"must be one of {', '.join(PULL_FROM_MIRROR)}"
            )
        if usage and by_digest:
            raise ConfigError(
                source,
                f"{mkey}.pull-from-mirror",
                "cannot be set when the registry sets mirror-by-digest-only",
            )
        out.append(
            Mirror(
                location=_location(source, f"{mkey}.location", location),
                insecure=_bool(source, f"{mkey}.insecure", table.get("insecure", False)),
                pull_from_mirror=usage or "all",
            )
        )
    return tuple(out)


def _location(source: str, key: str, value: str) -> str:
    """host[:port][/namespace...][:tag|@digest], without a URI scheme or trailing slashes."""
    value = value.rstrip("/")
    if not value:
        raise ConfigError(source, key, "cannot be empty")
    if value.startswith(("http://", "https://")):
        raise ConfigError(source, key, f"{value!r}: URI schemes are not supported")
    host, _, rest = value.partition("/")
    if not DOMAIN.match(host):
        raise ConfigError(source, key, f"{value!r}: invalid registry host {host!r}")
    if rest:
        try:
            parse_raw(value)
        except InvalidArgument:
            raise ConfigError(source, key, f"{value!r}: invalid repository path") from None
    return value


def _prefix(source: str, key: str, value: str) -> str:
    if value.startswith("*."):
        if not _WILDCARD.match(value):
            raise ConfigError(source, key, f"{value!r}: a wildcard prefix has the form *.example.com")
        return value
    return _location(source, key, value)


def _search_registries(source: str, value: Any) -> tuple[str, ...]:
    hosts = _string_list(source, "unqualified-search-registries", value)
    out = []
    for host in hosts:
        host = host.rstrip("/")
        if not DOMAIN.match(host):
            raise ConfigError(source, "unqualified-search-registries", f"{host!r} is not a host[:port]")
        out.append(host)
    return tuple(out)


def _aliases(source: str, table: Any) -> dict[str, str]:
    if not isinstance(table, dict):
        raise ConfigError(source, "aliases", "expected a table")
    out: dict[str, str] = {}
    for name, value in table.items():
        key = f"aliases.{name!r}"
        if not isinstance(value, str):
            raise ConfigError(source, key, "expected a string")
        if not is_short_name(name) or ":" in name or "@" in name:
            raise ConfigError(source, key, "an alias name is a short name without tag or digest")
        if not value:
            out[name] = ""
            continue
        try:
            ref = parse_raw(value)
        except InvalidArgument as exc:
            raise ConfigError(source, key, str(exc)) from None
        if is_short_name(value) or ref.tag or ref.digest:
            raise ConfigError(
                source, key, f"{value!r}: must be a registry and repository, without tag or digest"
            )
        out[name] = ref.repository
    return out


def _bool(source: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(source, key, f"expected a boolean, got {value!r}")
    return value


def _string_list(source: str, key: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(source, key, "expected a list of strings")
    return value
