"""Pod networking: pinned network namespaces and CNI plugins."""

from cri_py.network.manager import NetworkManager, PodNetworkRequest, PodNetworkResult
from cri_py.network.netns import create_pinned_netns, remove_pinned_netns
from cri_py.network.plugin import CniPluginError

__all__ = [
    "CniPluginError",
    "NetworkManager",
    "PodNetworkRequest",
    "PodNetworkResult",
    "create_pinned_netns",
    "remove_pinned_netns",
]
