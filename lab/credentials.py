"""Certificates the lab's tests control, made with `cryptography`: a host certificate and a grid proxy file."""
from __future__ import annotations

import datetime as dt
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, ObjectIdentifier

PROXY_CERT_INFO_OID = ObjectIdentifier("1.3.6.1.5.5.7.1.14")  # RFC 3820 proxyCertInfo
# DER of ProxyCertInfo { pCPathLenConstraint absent, proxyPolicy { id-ppl-inheritAll } }
PROXY_CERT_INFO_INHERIT_ALL = bytes.fromhex("300c300a06082b06010505071501")
BACKDATE = dt.timedelta(days=30)


def _window(days: float) -> tuple[dt.datetime, dt.datetime]:
    """(not before, not after) for a certificate that expires `days` from now (negative: already expired)."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    not_after = now + dt.timedelta(days=days)
    return min(now, not_after) - BACKDATE, not_after


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def host_cert(common_name: str, days: float, addresses: tuple[str, ...] = ()) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM): a self-signed EC host certificate expiring `days` from now (float, may be < 0)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "vobox-lab"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    not_before, not_after = _window(days)
    sans = [x509.DNSName(common_name)] + [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def proxy_pem(days: float, user: str = "vobox-lab user") -> bytes:
    """A grid proxy file as voms-proxy-init writes it: proxy certificate, its key, then the user certificate.

    The proxy (RFC 3820, subject = user DN + CN=<serial>) expires `days` from now (float, may be < 0); the
    user certificate outlives it by a year, so the file's first certificate is the one that expires.
    """
    user_key = ec.generate_private_key(ec.SECP256R1())
    user_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "vobox-lab"),
                           x509.NameAttribute(NameOID.COMMON_NAME, user)])
    not_before, not_after = _window(days)
    user_cert = (x509.CertificateBuilder().subject_name(user_name).issuer_name(user_name)
                 .public_key(user_key.public_key()).serial_number(x509.random_serial_number())
                 .not_valid_before(not_before).not_valid_after(max(not_after, not_before) + dt.timedelta(days=365))
                 .sign(user_key, hashes.SHA256()))
    proxy_key = ec.generate_private_key(ec.SECP256R1())
    serial = x509.random_serial_number() >> 100
    proxy_name = x509.Name([*user_name, x509.NameAttribute(NameOID.COMMON_NAME, str(serial))])
    proxy = (x509.CertificateBuilder().subject_name(proxy_name).issuer_name(user_name)
             .public_key(proxy_key.public_key()).serial_number(serial)
             .not_valid_before(not_before).not_valid_after(not_after)
             .add_extension(x509.UnrecognizedExtension(PROXY_CERT_INFO_OID, PROXY_CERT_INFO_INHERIT_ALL),
                            critical=True)
             .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                          data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                          crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
             .sign(user_key, hashes.SHA256()))
    return (proxy.public_bytes(serialization.Encoding.PEM) + _pem_key(proxy_key)
            + user_cert.public_bytes(serialization.Encoding.PEM))
