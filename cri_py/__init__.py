"""cri-py: a Kubernetes Container Runtime Interface (CRI) runtime."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cri-py")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"
