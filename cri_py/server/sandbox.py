"""RuntimeService pod sandbox handlers (placeholder until its owner lands the handlers)."""


class SandboxHandlers:
    pass
