"""The one place where domain errors become gRPC status codes."""

from __future__ import annotations

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


def status_code_for(exc: BaseException) -> grpc.StatusCode:
    if isinstance(exc, TimeoutError):
        # a time limit somewhere below ran out: the client's word for it, never INTERNAL
        return grpc.StatusCode.DEADLINE_EXCEEDED
    for cls in type(exc).__mro__:
        code = _CODES.get(cls)
        if code is not None:
            return code
    return grpc.StatusCode.UNKNOWN
