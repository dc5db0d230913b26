# A node image carrying cri-py and what it drives: runc, crun, runsc, conmon, catatonit, the CNI plugins.
# Run it privileged with the host's cgroups, /var/lib/cri-py and /run/cri-py (the socket) as volumes.
FROM debian:bookworm

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      runc crun runsc conmon catatonit containernetworking-plugins \
      iproute2 iptables kmod util-linux procps ca-certificates \
      python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/cri-py
COPY pyproject.toml README.md ./
COPY cri_py ./cri_py
COPY api ./api
RUN python3 -m venv .venv \
 && .venv/bin/pip install --no-cache-dir . \
 && ln -s /opt/cri-py/.venv/bin/cri-py /usr/local/bin/cri-py

COPY conf/cri-py.yaml /etc/cri-py/cri-py.yaml
COPY conf/cni/10-cri-py.conflist /etc/cni/net.d/10-cri-py.conflist

VOLUME ["/run/cri-py", "/var/lib/cri-py"]
ENTRYPOINT ["cri-py", "serve", "--config", "/etc/cri-py/cri-py.yaml"]
