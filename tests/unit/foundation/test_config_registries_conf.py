"""containers-registries.conf(5) and its drop-ins: parsing, merge order, strict errors, and the
merge with cri-py's own `registries` keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from cri_py.config import ConfigError, load_config
from cri_py.config.model import RegistryConfig, merge_registries
from cri_py.config.registries_conf import read_registries_conf


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


MAN_PAGE_EXAMPLE = """
unqualified-search-registries = ["example.com"]

[[registry]]
prefix = "example.com/foo"
insecure = false
blocked = false
location = "internal-registry-for-example.com/bar"

[[registry.mirror]]
location = "example-mirror-0.local/mirror-for-foo"

[[registry.mirror]]
location = "example-mirror-1.local/mirrors/foo"
insecure = true

[[registry]]
location = "registry.com"

[[registry.mirror]]
location = "mirror.registry.com"
"""


def test_man_page_example_parses(tmp_path: Path) -> None:
    conf = read_registries_conf(write(tmp_path / "registries.conf", MAN_PAGE_EXAMPLE))
    assert conf.search == ("example.com",)
    assert conf.short_name_mode == "permissive"  # the default when unset
    foo, com = conf.rules
    assert (foo.prefix, foo.location) == ("example.com/foo", "internal-registry-for-example.com/bar")
    assert [(m.location, m.insecure) for m in foo.mirrors] == [
        ("example-mirror-0.local/mirror-for-foo", False),
        ("example-mirror-1.local/mirrors/foo", True),
    ]
    # a table with only a location has that location as its prefix
    assert (com.prefix, com.location) == ("registry.com", "registry.com")
    assert foo.source == str(tmp_path / "registries.conf")


def test_absent_file_is_ignored_but_dropins_still_count(tmp_path: Path) -> None:
    main = tmp_path / "registries.conf"
    assert read_registries_conf(main).rules == ()
    write(tmp_path / "registries.conf.d" / "10-a.conf", 'unqualified-search-registries = ["quay.io"]\n')
    conf = read_registries_conf(main)
    assert conf.search == ("quay.io",)
    assert conf.files == (str(tmp_path / "registries.conf.d" / "10-a.conf"),)
    assert read_registries_conf(None).files == ()


def test_dropins_in_lexical_order_replace_and_merge(tmp_path: Path) -> None:
    main = write(
        tmp_path / "registries.conf",
        """
unqualified-search-registries = ["a.example"]
short-name-mode = "enforcing"
[aliases]
"app" = "a.example/team/app"
"tool" = "a.example/tools/tool"
[[registry]]
prefix = "docker.io"
location = "mirror-a.example"
[[registry]]
location = "keep.example"
insecure = true
""",
    )
    d = tmp_path / "registries.conf.d"
    write(d / "20-late.conf", '[[registry]]\nprefix = "docker.io"\nlocation = "mirror-c.example"\n')
    write(
        d / "10-early.conf",
        """
unqualified-search-registries = ["b.example", "c.example"]
[aliases]
"tool" = ""
"other" = "b.example/other"
[[registry]]
prefix = "docker.io"
location = "mirror-b.example"
""",
    )
    write(d / "30-ignored.txt", "this is not TOML [")
    (d / "40-dir.conf").mkdir()
    conf = read_registries_conf(main)
    assert conf.files == (str(main), str(d / "10-early.conf"), str(d / "20-late.conf"))
    by_prefix = {r.prefix: r for r in conf.rules}
    # the same prefix in a later file replaces the whole table
    assert by_prefix["docker.io"].location == "mirror-c.example"
    assert by_prefix["docker.io"].source == str(d / "20-late.conf")
    assert by_prefix["keep.example"].insecure
    assert conf.search == ("b.example", "c.example") and conf.search_source == str(d / "10-early.conf")
    assert conf.short_name_mode == "enforcing"  # not set again: kept
    # aliases merge; an empty value erases one
    assert conf.aliases == {"app": "a.example/team/app", "other": "b.example/other"}


def test_first_table_of_a_prefix_wins_within_one_file(tmp_path: Path) -> None:
    conf = read_registries_conf(
        write(
            tmp_path / "r.conf",
            '[[registry]]\nprefix = "x.example"\nlocation = "one.example"\n'
            '[[registry]]\nprefix = "x.example"\nlocation = "two.example"\n',
        )
    )
    assert [r.location for r in conf.rules] == ["one.example"]


def test_version_1_lists_are_converted(tmp_path: Path) -> None:
    conf = read_registries_conf(
        write(
            tmp_path / "r.conf",
            "[registries.search]\nregistries = ['one.example', 'two.example']\n"
            "[registries.insecure]\nregistries = ['plain.example:5000']\n"
            "[registries.block]\nregistries = ['bad.example', 'plain.example:5000']\n",
        )
    )
    assert conf.search == ("one.example", "two.example")
    rules = {r.prefix: r for r in conf.rules}
    assert rules["bad.example"].blocked and not rules["bad.example"].insecure
    assert rules["plain.example:5000"].blocked and rules["plain.example:5000"].insecure


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nope = 1\n", "nope: unknown key"),
        ("[[registry]]\nlocation = 'https://x.example'\n", "URI schemes are not supported"),
        ("[[registry]]\nprefix = 'x.example'\n", "location: is required unless prefix is *.domain"),
        ("[[registry]]\ninsecure = true\n", "neither prefix nor location is set"),
        ("[[registry]]\nlocation = 'x.example'\ncolour = 'red'\n", "registry[0].colour: unknown key"),
        (
            "[[registry]]\nlocation = 'x.example'\ninsecure = 'yes'\n",
            "registry[0].insecure: expected a boolean",
        ),
        ("[[registry]]\nlocation = 'x.example'\nproxy = 'http://p:3128'\n", "proxies are not supported"),
        (
            "[[registry]]\nlocation = 'x.example'\npull-from-mirror = 'all'\n",
            "is a [[registry.mirror]] setting",
        ),
        (
            "[[registry]]\nlocation = 'x.example'\nmirror-by-digest-only = true\n"
            "[[registry.mirror]]\nlocation = 'm.example'\npull-from-mirror = 'tag-only'\n",
            "cannot be set when the registry sets mirror-by-digest-only",
        ),
        (
            "[[registry]]\nlocation = 'x.example'\n[[registry.mirror]]\nlocation = 'm.example'\n"
            "pull-from-mirror = 'sometimes'\n",
            "pull-from-mirror: must be one of all, digest-only, tag-only",
        ),
        ("[[registry]]\nprefix = '*.x.example/foo'\nlocation = 'y.example'\n", "wildcard prefix"),
        ("[[registry]]\nlocation = 'UPPER.example/Repo'\n", "invalid repository path"),
        (
            "[[registry]]\nprefix = 'a.example'\nlocation = 'x.example'\ninsecure = true\n"
            "[[registry]]\nprefix = 'b.example'\nlocation = 'x.example'\n",
            "x.example is defined several times with conflicting insecure",
        ),
        ("short-name-mode = 'lenient'\n", "short-name-mode: must be one of enforcing, permissive, disabled"),
        ("unqualified-search-registries = ['quay.io/ns']\n", "is not a host[:port]"),
        ("[aliases]\n'app:1' = 'x.example/app'\n", "an alias name is a short name without tag or digest"),
        ("[aliases]\n'x.example/app' = 'x.example/app'\n", "an alias name is a short name"),
        (
            "[aliases]\n'app' = 'x.example/app:1'\n",
            "must be a registry and repository, without tag or digest",
        ),
        ("[aliases]\n'app' = 'team/app'\n", "must be a registry and repository"),
        ("[registries.search]\nregistries = ['a.example']\n[[registry]]\nlocation = 'b.example'\n", "mixed"),
        ("[[registry]\n", "invalid TOML"),
    ],
)
def test_broken_files_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "registries.conf", text)
    with pytest.raises(ConfigError) as info:
        read_registries_conf(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_dropins_must_be_version_2(tmp_path: Path) -> None:
    dropin = write(tmp_path / "r.conf.d" / "1.conf", "[registries.block]\nregistries = ['x.example']\n")
    with pytest.raises(ConfigError, match="drop-in files must use the version 2 format") as info:
        read_registries_conf(tmp_path / "r.conf")
    assert str(dropin) in str(info.value)


def test_unused_settings_are_reported_not_dropped_silently(tmp_path: Path) -> None:
    conf = read_registries_conf(
        write(tmp_path / "r.conf", 'credential-helpers = ["containers-auth.json", "secretservice"]\n')
    )
    assert len(conf.ignored) == 1 and "secretservice" in conf.ignored[0]


def test_cri_py_keys_win_where_both_speak() -> None:
    from cri_py.config.model import Mirror, RegistriesConf, RegistryRule

    system = RegistriesConf(
        rules=(
            RegistryRule(
                prefix="docker.io",
                location="docker.io",
                insecure=False,
                blocked=False,
                mirrors=(Mirror("conf-mirror.example"),),
                source="/etc/containers/registries.conf",
            ),
            RegistryRule(prefix="docker.io/library/busybox", location="narrow.example/busybox", source="f"),
        )
    )
    merged = merge_registries(
        system,
        {
            "docker.io": RegistryConfig(insecure=True, mirrors=("http://127.0.0.1:5000",)),
            "other.example": RegistryConfig(mirror_only=True, mirrors=("https://m.example/prefix",)),
        },
    )
    rules = {r.prefix: r for r in merged.rules}
    hub = rules["docker.io"]
    assert hub.insecure is True  # cri-py's key
    assert [(m.location, m.scheme) for m in hub.mirrors] == [("127.0.0.1:5000", "http")]
    assert hub.source == "/etc/containers/registries.conf, cri-py registries"
    # a narrower registries.conf prefix is untouched
    assert rules["docker.io/library/busybox"].location == "narrow.example/busybox"
    other = rules["other.example"]
    assert other.mirror_only and other.mirrors[0].url_path == "/prefix"
    # keys cri-py does not set leave registries.conf's values alone
    kept = merge_registries(system, {"docker.io": RegistryConfig(mirror_only=True)})
    assert {r.prefix: r for r in kept.rules}["docker.io"].mirrors == (Mirror("conf-mirror.example"),)


def test_config_shows_the_merged_result(tmp_path: Path) -> None:
    conf = write(
        tmp_path / "containers" / "registries.conf",
        '[[registry]]\nprefix = "docker.io"\nlocation = "127.0.0.1:5000"\ninsecure = true\n'
        '[[registry]]\nlocation = "bad.example"\nblocked = true\n',
    )
    main = write(
        tmp_path / "c.yaml",
        f"registries_conf: {conf}\nregistries:\n  docker.io: {{insecure: false}}\n"
        "pinned_images: ['registry.k8s.io/*', busybox]\n",
    )
    config = load_config(main)
    shown = config.to_json()
    rules = {r["prefix"]: r for r in shown["effective_registries"]["rules"]}
    assert rules["docker.io"]["location"] == "127.0.0.1:5000"
    assert rules["docker.io"]["insecure"] is False  # the cri-py key won
    assert rules["bad.example"]["blocked"] is True
    assert shown["registries"] == {"docker.io": {"insecure": False, "mirror_only": False}}
    assert shown["registries_conf"] == str(conf)
    assert shown["pinned_images"] == ["registry.k8s.io/*", "busybox"]
    assert "system_registries" not in shown


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("pinned_images: ['a*b']\n", "pinned_images[0]: 'a*b': a * may only end a pattern"),
        ("pinned_images: ['ok', 'Bad Name']\n", "pinned_images[1]"),
        ("registries_conf: 3\n", "registries_conf: expected a string"),
    ],
)
def test_new_keys_are_checked(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("*", r"\*")):
        load_config(write(tmp_path / "c.yaml", text))


def test_empty_paths_turn_the_files_off(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path / "c.yaml", "registries_conf: ''\nauth_file: ''\nsignature_policy: ''\n")
    )
    assert config.registries_conf is None and config.auth_file is None and config.signature_policy is None
    defaults = load_config(write(tmp_path / "d.yaml", ""))
    assert defaults.registries_conf == Path("/etc/containers/registries.conf")
    assert defaults.auth_file == Path("/etc/containers/auth.json")
    assert defaults.signature_policy == Path("/etc/containers/policy.json")
