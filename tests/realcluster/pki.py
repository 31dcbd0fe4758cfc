"""The certificates and keys of a control plane, made with openssl: one CA,
the API server's serving certificate, a client certificate per component
and the service-account signing key; and kubeconfigs that use them."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path


def _openssl(*args) -> None:
    out = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed ({out.returncode}): {out.stderr.strip()[-2000:]}")


class Pki:
    """A CA, the API server's serving certificate, client certificates and
    the service-account signing key, made with openssl."""

    def __init__(self, folder: Path):
        self.dir = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.ca_key, self.ca_crt = folder / "ca.key", folder / "ca.crt"
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "7", "-subj", "/CN=realcluster-ca",
                 "-keyout", self.ca_key, "-out", self.ca_crt)
        self.sa_key, self.sa_pub = folder / "sa.key", folder / "sa.pub"
        _openssl("genrsa", "-out", self.sa_key, "2048")
        _openssl("rsa", "-in", self.sa_key, "-pubout", "-out", self.sa_pub)

    def issue(self, name: str, subject: str, ext: str) -> tuple[Path, Path]:
        key, csr, crt = self.dir / f"{name}.key", self.dir / f"{name}.csr", self.dir / f"{name}.crt"
        extfile = self.dir / f"{name}.ext"
        extfile.write_text(ext)
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", key, "-out", csr)
        _openssl("x509", "-req", "-in", csr, "-CA", self.ca_crt, "-CAkey", self.ca_key, "-CAcreateserial",
                 "-days", "7", "-extfile", extfile, "-out", crt)
        return crt, key

    def serving(self) -> tuple[Path, Path]:
        return self.issue(
            "apiserver", "/CN=kube-apiserver",
            "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
            "DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n",
        )

    def client(self, name: str, cn: str, org: str | None = None) -> tuple[Path, Path]:
        subject = f"/CN={cn}" + (f"/O={org}" if org else "")
        return self.issue(name, subject, "extendedKeyUsage=clientAuth\n")


def kubeconfig_text(server: str, ca: Path, user: dict) -> str:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "realcluster", "cluster": {
            "server": server, "certificate-authority-data": base64.b64encode(ca.read_bytes()).decode()}}],
        "users": [{"name": "user", "user": user}],
        "contexts": [{"name": "realcluster", "context": {"cluster": "realcluster", "user": "user"}}],
        "current-context": "realcluster",
    }
    return json.dumps(doc, indent=1)


def cert_user(crt: Path, key: Path) -> dict:
    return {
        "client-certificate-data": base64.b64encode(crt.read_bytes()).decode(),
        "client-key-data": base64.b64encode(key.read_bytes()).decode(),
    }
