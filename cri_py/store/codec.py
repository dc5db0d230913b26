"""How records keep what they persist: protobuf messages as base64 text, state enums by value.

Sandbox and container records are dataclasses with a `state` enum and the CRI config as sent;
both round-trip through the same two functions, which ignore keys a newer version wrote.
"""

from __future__ import annotations

import base64
import dataclasses
from enum import Enum
from typing import Any, TypeVar

M = TypeVar("M")
R = TypeVar("R")


def encode_message(message: Any) -> str:
    return base64.b64encode(message.SerializeToString()).decode()


def decode_message(text: str, message: M) -> M:
    """Parse `text` into the (empty) `message` and return it; "" leaves it empty."""
    if text:
        message.ParseFromString(base64.b64decode(text))  # type: ignore[attr-defined]
    return message


def record_to_dict(record: Any) -> dict[str, Any]:
    data = dataclasses.asdict(record)
    data["state"] = str(record.state)
    return data


def record_from_dict(cls: type[R], data: dict[str, Any], state_type: type[Enum]) -> R:
    """Records are immutable values: their sequences are tuples (JSON gives lists)."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names}
    values["state"] = state_type(values["state"])
    return cls(**values)


def evolve(record: R, **changes: Any) -> R:
    """A copy of a frozen record with `changes`; a parsed-config cache carries over when the
    config it was parsed from is unchanged."""
    new = dataclasses.replace(record, **changes)  # type: ignore[type-var]
    cached = record.__dict__.get("_parsed")
    if cached is not None and "config_b64" not in changes:
        new.__dict__["_parsed"] = cached
    return new
