"""A one-node Kubernetes cluster on cri-py, for hack/node and tests/node.

The node lives in a network namespace of its own (as kind runs a node inside a container):
cri-py, etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kubelet all run in it,
and kubectl on the host reaches the API server at the node's address on a veth pair. Everything
the cluster owns lives under one directory; `Cluster.down()` removes every kernel object it made.
"""
