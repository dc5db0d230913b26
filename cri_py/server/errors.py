"""The one place where domain errors become gRPC status codes."""

from __future__ import annotations

import errno
import sqlite3

import grpc

from cri_py import errors

_CODES: dict[type[errors.CriError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.Internal: grpc.StatusCode.INTERNAL,
}


def disk_full(exc: BaseException) -> bool:
    """A full filesystem (or quota) anywhere in the chain: the state directory's, for an image
    layer or the database. Kubelet gets RESOURCE_EXHAUSTED for it, not INTERNAL."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(seen, sqlite3.Error) and getattr(seen, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def status_code_for(exc: BaseException) -> grpc.StatusCode:
    """The code of a domain error, or of an unexpected one (UNKNOWN: the caller says INTERNAL)."""
    if disk_full(exc):
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    if isinstance(exc, TimeoutError):
        # a time limit somewhere below ran out: the client's word for it, never INTERNAL
        return grpc.StatusCode.DEADLINE_EXCEEDED
    for cls in type(exc).__mro__:
        code = _CODES.get(cls)
        if code is not None:
            return code
    return grpc.StatusCode.UNKNOWN
