# cri-py: `make run` starts the daemon with the default config, `make test` runs the whole suite.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
CONFIG ?= /etc/cri-py/cri-py.yaml
CNI_CONF_DIR ?= /etc/cni/net.d

.PHONY: node-test-evented-pleg install run test lint typecheck unit e2e critest proto bench clean-test-leftovers k8s node node-down node-test node-conformance node-conformance-subset

install:
	hack/install-deps.sh

# The default config and CNI network are installed only where the operator has none of their own.
run: install
	@install -d /etc/cri-py /etc/cri-py/cri-py.d $(CNI_CONF_DIR)
	@[ -e $(CONFIG) ] || install -m 0644 conf/cri-py.yaml $(CONFIG)
	@ls $(CNI_CONF_DIR)/*.conf* $(CNI_CONF_DIR)/*.json >/dev/null 2>&1 || install -m 0644 conf/cni/10-cri-py.conflist $(CNI_CONF_DIR)/
	@$(PY) hack/prepare-run-images --config $(CONFIG)
	@[ -e /usr/local/bin/cri-py ] || ln -s $(CURDIR)/$(VENV)/bin/cri-py /usr/local/bin/cri-py
	@echo "cri-py: serving on /run/cri-py/cri-py.sock (config $(CONFIG))"
	@echo "  crictl --runtime-endpoint unix:///run/cri-py/cri-py.sock version"
	@echo "  or put 'runtime-endpoint: unix:///run/cri-py/cri-py.sock' and 'image-endpoint: unix:///run/cri-py/cri-py.sock' in /etc/crictl.yaml"
	exec $(VENV)/bin/cri-py serve --config $(CONFIG)

test: install lint typecheck unit k8s e2e critest node-test node-conformance-subset

lint:
	$(VENV)/bin/ruff check cri_py tests hack
	$(VENV)/bin/ruff format --check cri_py tests

typecheck:
	$(VENV)/bin/mypy

unit:
	$(VENV)/bin/pytest -q tests/unit

# kubectl from hack/k8s/build is the reference streaming client of two e2e files (make k8s builds it).
e2e:
	$(VENV)/bin/pytest -q tests/e2e

# cri-tools' CRI validation suite (critest v1.36) against a cri-py of its own, with runc and
# with gVisor's runsc; builds critest (hack/cri-tools) when absent. A failing spec, or a skip
# that is not expected, fails it (docs/conformance.md lists what each handler may fail).
critest: install
	$(PY) hack/critest
	$(PY) hack/critest --runtime-handler runsc

# Kubernetes' own binaries (kubelet, kube-apiserver, ..., etcd), built once per version into /var/cache/cri-py.
k8s:
	hack/k8s/build

# A one-node cluster on this checkout's cri-py (hack/node up); prints KUBECONFIG=... to use with kubectl.
NODE_DIR ?= /var/lib/cri-py-node
node: install k8s
	hack/node up --dir $(NODE_DIR)

node-down:
	hack/node down --dir $(NODE_DIR)

# tests/node: a cluster of its own (not $(NODE_DIR)) driven by the kubernetes client and kubectl.
node-test: install k8s
	$(VENV)/bin/pytest -q tests/node

# the same suite with kubelet's alpha EventedPLEG: pod state from GetContainerEvents, not relisting
node-test-evented-pleg: install k8s
	NODE_FEATURE_GATES=EventedPLEG=true $(VENV)/bin/pytest -q tests/node

# Kubernetes' node e2e suite (test/e2e_node v1.36.3, focus [NodeConformance]) with kubelet on a
# cri-py of its own, on a node of its own (network namespace cripy-nconf-*, cgroup subtree, own
# mounts); builds kubelet, e2e_node.test, ginkgo and the suite's images when absent. A failing or
# skipped spec outside hack/node-conformance/expectations.py fails it. RUNTIME=containerd runs the
# same node on containerd 2.x (hack/peers) instead; NODE_CONFORMANCE_ARGS passes --focus etc.
RUNTIME ?= cri-py
node-conformance: install
	$(PY) hack/node-conformance/run --runtime $(RUNTIME) $(NODE_CONFORMANCE_ARGS)

# The fixed subset `make test` runs (hack/node-conformance/subset.py: 56 specs named one by one,
# each a different kubelet <-> runtime path; about 3 minutes here, where the whole focus takes
# about 80), with e2e_node.test and the suite's images built first when absent.
node-conformance-subset: install
	$(PY) hack/node-conformance/run --runtime $(RUNTIME) --subset $(NODE_CONFORMANCE_ARGS)

proto:
	hack/gen-proto.sh

bench: install
	$(PY) hack/bench --compare
