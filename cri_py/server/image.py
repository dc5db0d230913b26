"""ImageService handlers (placeholder until its owner lands the handlers)."""


class ImageHandlers:
    pass
