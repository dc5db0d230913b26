"""Domain errors raised where a problem happens.

Each maps to one gRPC status code in exactly one place (`cri_py.server.errors`), so that
kubelet can tell a missing pod from a broken one. Code below the server never imports grpc
for error reporting.
"""


class CriError(Exception):
    """Base class: a failure with a message meant for the client."""


class InvalidArgument(CriError):
    """The request is malformed or names something impossible."""


class NotFound(CriError):
    """The object the request names does not exist."""


class AlreadyExists(CriError):
    """An object with that name or id exists already."""


class FailedPrecondition(CriError):
    """The object is in a state where the request cannot be honoured."""


class ResourceExhausted(CriError):
    """A bound was reached (in-flight requests, sizes)."""


class Unavailable(CriError):
    """The daemon is not ready to serve this (start-up recovery, shutdown)."""


class DeadlineExceeded(CriError):
    """An operation ran out of its time budget."""


class Internal(CriError):
    """Something below us failed: a runtime, a plugin, the kernel."""
