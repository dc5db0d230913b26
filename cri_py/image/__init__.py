"""Images: references, registry pulls, the content store, layer unpacking, the ImageService."""
