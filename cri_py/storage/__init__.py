"""Container root filesystems built from unpacked image layers."""

from cri_py.storage.rootfs import RootfsManager

__all__ = ["RootfsManager"]
