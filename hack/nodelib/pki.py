"""The cluster's certificates, service-account key and kubeconfigs, made with openssl at `up`.

One CA signs everything: the API server's serving certificate (the node address, the
`kubernetes` service IP and names), kubelet's serving certificate, and the client certificates
of the admin, the controller-manager, the scheduler, kubelet and the API server's kubelet client.
Keys are ECDSA P-256 (quick to make, accepted by every component).
"""

from __future__ import annotations

import base64
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from nodelib.layout import Layout, Slot

DAYS = "30"


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


def _openssl(*args: str, stdin: str | None = None) -> None:
    proc = subprocess.run(["openssl", *args], input=stdin, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {args[0]}: {proc.stderr.strip()}")


def _key(path: Path) -> None:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path))
    path.chmod(0o600)


def make_ca(directory: Path) -> Pair:
    ca = Pair(directory / "ca.crt", directory / "ca.key")
    _key(ca.key)
    _openssl(
        "req", "-x509", "-new", "-key", str(ca.key), "-out", str(ca.cert), "-days", DAYS,
        "-subj", "/CN=cri-py-node-ca", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
    )  # fmt: skip
    return ca


def issue(
    ca: Pair, directory: Path, name: str, subject: str, *, server_sans: list[str] | None = None
) -> Pair:
    """A certificate signed by `ca`: a server one when it has SANs, a client one otherwise."""
    pair = Pair(directory / f"{name}.crt", directory / f"{name}.key")
    _key(pair.key)
    usage = "serverAuth" if server_sans else "clientAuth"
    extensions = [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        f"extendedKeyUsage={usage}",
    ]
    if server_sans:
        extensions.append("subjectAltName=" + ",".join(server_sans))
    with tempfile.NamedTemporaryFile("w", suffix=".cnf", dir=directory) as ext:
        ext.write("\n".join(extensions) + "\n")
        ext.flush()
        csr = directory / f"{name}.csr"
        _openssl("req", "-new", "-key", str(pair.key), "-out", str(csr), "-subj", subject)
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key),
            "-CAcreateserial", "-out", str(pair.cert), "-days", DAYS, "-extfile", ext.name,
        )  # fmt: skip
        csr.unlink()
    return pair


def kubeconfig(path: Path, server: str, ca: Pair, client: Pair, user: str) -> None:
    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cri-py", "cluster": {"server": server, "certificate-authority-data": b64(ca.cert)}}],
        "users": [{"name": user, "user": {"client-certificate-data": b64(client.cert), "client-key-data": b64(client.key)}}],
        "contexts": [{"name": "cri-py", "context": {"cluster": "cri-py", "user": user}}],
        "current-context": "cri-py",
    }  # fmt: skip
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)


@dataclass(frozen=True)
class Pki:
    ca: Pair
    apiserver: Pair
    apiserver_kubelet_client: Pair
    kubelet_serving: Pair
    service_account_key: Path
    service_account_pub: Path


def generate(layout: Layout, slot: Slot) -> Pki:
    d = layout.pki
    d.mkdir(parents=True, exist_ok=True)
    d.chmod(0o700)
    ca = make_ca(d)
    apiserver = issue(
        ca, d, "apiserver", "/CN=kube-apiserver",
        server_sans=[
            f"IP:{slot.node_address}", f"IP:{slot.api_service_ip}", "IP:127.0.0.1",
            "DNS:kubernetes", "DNS:kubernetes.default", "DNS:kubernetes.default.svc",
            "DNS:kubernetes.default.svc.cluster.local", "DNS:localhost",
        ],
    )  # fmt: skip
    kubelet_client = issue(
        ca, d, "apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client"
    )
    kubelet_serving = issue(
        ca, d, "kubelet-serving", f"/CN={slot.node_name}",
        server_sans=[f"IP:{slot.node_address}", f"DNS:{slot.node_name}"],
    )  # fmt: skip
    sa_key, sa_pub = d / "sa.key", d / "sa.pub"
    _key(sa_key)
    _openssl("pkey", "-in", str(sa_key), "-pubout", "-out", str(sa_pub))
    clients = {
        "admin": ("/O=system:masters/CN=kubernetes-admin", "kubernetes-admin"),
        "controller-manager": ("/CN=system:kube-controller-manager", "system:kube-controller-manager"),
        "scheduler": ("/CN=system:kube-scheduler", "system:kube-scheduler"),
        "kubelet": (f"/O=system:nodes/CN=system:node:{slot.node_name}", f"system:node:{slot.node_name}"),
    }
    for name, (subject, user) in clients.items():
        pair = issue(ca, d, name, subject)
        kubeconfig(layout.kubeconfig(name), slot.api_url, ca, pair, user)
    layout.admin_kubeconfig.write_bytes(layout.kubeconfig("admin").read_bytes())
    layout.admin_kubeconfig.chmod(0o600)
    return Pki(ca, apiserver, kubelet_client, kubelet_serving, sa_key, sa_pub)


def load(layout: Layout) -> Pki:
    d = layout.pki

    def pair(name: str) -> Pair:
        return Pair(d / f"{name}.crt", d / f"{name}.key")

    return Pki(
        pair("ca"), pair("apiserver"), pair("apiserver-kubelet-client"), pair("kubelet-serving"),
        d / "sa.key", d / "sa.pub",
    )  # fmt: skip
