"""The handler context type (grpc.aio.ServicerContext; grpc ships no type stubs, so it is Any)."""

from typing import Any, TypeAlias

Context: TypeAlias = Any
