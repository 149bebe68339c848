"""A small test PKI made with `cryptography`: CAs issuing server and client certificates (expired ones too),
and CA directories with hashed names as grid hosts have (/etc/grid-security/certificates)."""
from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import subprocess

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


class CA:
    """A self-signed CA that issues server and client certificates into `directory`."""

    def __init__(self, directory, name: str) -> None:
        self.dir = str(directory)
        os.makedirs(self.dir, exist_ok=True)
        self.name = name
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} test CA")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(days=60))
                     .not_valid_after(now + datetime.timedelta(days=365))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                                    critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.pem = os.path.join(self.dir, f"{name}-ca.pem")
        with open(self.pem, "wb") as f:
            f.write(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, cn: str, *, client: bool = False, days: float = 1.0, org: str | None = None,
              addresses: tuple[str, ...] = ("127.0.0.1",)) -> tuple[str, str]:
        """(certificate path, key path) for cn, expiring `days` from now (negative: expired).

        A server certificate carries IP SANs `addresses`; a client certificate the clientAuth usage."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        not_after = now + datetime.timedelta(days=days)
        attrs = ([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)] if org else []) + [
            x509.NameAttribute(NameOID.COMMON_NAME, cn)]
        b = (x509.CertificateBuilder().subject_name(x509.Name(attrs))
             .issuer_name(self.cert.subject).public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(min(now, not_after) - datetime.timedelta(days=30)).not_valid_after(not_after)
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH if client
                                                   else ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
        if not client:
            b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(a))
                                                             for a in addresses]), critical=False)
        cert = b.sign(self.key, hashes.SHA256())
        cpath, kpath = (os.path.join(self.dir, f"{cn}.pem"), os.path.join(self.dir, f"{cn}.key"))
        with open(cpath, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        with open(kpath, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        os.chmod(kpath, 0o600)
        return cpath, kpath

    def hashed_dir(self) -> str:
        """A CA directory as grid hosts have (/etc/grid-security/certificates): <subject hash>.0 files."""
        d = os.path.join(self.dir, "certificates")
        os.makedirs(d, exist_ok=True)
        h = subprocess.run(["openssl", "x509", "-hash", "-noout", "-in", self.pem], check=True,
                           capture_output=True, text=True).stdout.strip()
        with open(self.pem, "rb") as src, open(os.path.join(d, f"{h}.0"), "wb") as dst:
            dst.write(src.read())
        return d

    def plain_dir(self) -> str:
        """A CA directory holding the CA under its own name only (not rehashed: `openssl rehash` makes the links)."""
        d = os.path.join(self.dir, "unhashed")
        os.makedirs(d, exist_ok=True)
        shutil.copy(self.pem, os.path.join(d, os.path.basename(self.pem)))
        return d
