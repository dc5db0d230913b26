"""cri-py: a Kubernetes Container Runtime Interface (CRI) runtime."""

# the release, as pyproject.toml's [project] version says (a unit test keeps the two equal);
# not read through importlib.metadata, which brings email, zipfile and csv (~1.5 MiB
# resident) into a daemon that needs none of them
__version__ = "0.1.0"
