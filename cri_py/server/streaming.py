"""Exec/Attach/PortForward handlers (placeholder until its owner lands the handlers)."""


class StreamingHandlers:
    pass
