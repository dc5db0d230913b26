"""RuntimeService container handlers (placeholder until its owner lands the handlers)."""


class ContainerHandlers:
    pass
