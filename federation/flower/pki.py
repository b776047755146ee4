"""Flower's keys and certificates on disk, under `<data dir>/federation/flower/` (private keys
mode 0600, every file written atomically). docs/flower.md, "Authentication".

Central: a CA of its own (`tls/ca.pem`, `tls/ca.key`) and the SuperLink's server certificate it
signs (`tls/server.pem`, `tls/server.key`) for the names edges reach it by; the certificate is
made again when that set of names changes (the CA stays, so edges keep trusting it). Flower's
SuperNode authentication needs TLS: the SuperLink refuses `--enable-supernode-auth` without it.

Edge: the SuperNode's EC P-384 key pair in OpenSSH form (`supernode.key`, `supernode.pub`): Flower
signs every Fleet request of the SuperNode with it, and central's SuperLink lets in only the
public keys registered with it. Central's CA certificate is kept as `superlink-ca.pem`.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import uuid
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
SERVER_DAYS = 825


def flower_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "federation" / "flower"


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write `data` to `path` through a temporary file renamed into place (fsynced)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")  # (threads write at once)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


# ---- central: the SuperLink's TLS --------------------------------------------------------------
def tls_names(
    host: str, extra: Iterable[str] = (), public_url_host: str | None = None
) -> list[str]:
    """The names the SuperLink's certificate covers: loopback, this machine's name, the bind
    address (unless a wildcard), the public URL's host, and `extra`; sorted, no duplicates."""
    names = {"localhost", "127.0.0.1", "::1", socket.gethostname(), *extra}
    if host not in ("0.0.0.0", "::", ""):
        names.add(host)
    if public_url_host:
        names.add(public_url_host)
    return sorted(n.strip().strip("[]") for n in names if n and n.strip())


def _san(names: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _cert_names(path: Path) -> list[str] | None:
    if not path.is_file():
        return None
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    if cert.not_valid_after_utc < dt.datetime.now(dt.UTC) + dt.timedelta(days=30):
        return None  # (about to expire: made again)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    names = [str(v) for v in san.get_values_for_type(x509.IPAddress)]
    return sorted([*names, *san.get_values_for_type(x509.DNSName)])


def ensure_tls(directory: Path, names: list[str]) -> dict[str, Path]:
    """Central's CA and the SuperLink's certificate for `names` (made when missing, or when the
    names changed); returns the paths `ca`, `cert`, `key`."""
    tls = directory / "tls"
    paths = {"ca": tls / "ca.pem", "ca_key": tls / "ca.key",
             "cert": tls / "server.pem", "key": tls / "server.key"}  # fmt: skip
    now = dt.datetime.now(dt.UTC)
    if not (paths["ca"].is_file() and paths["ca_key"].is_file()):
        ca_key = ec.generate_private_key(ec.SECP384R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "qig central flower CA")])
        ca = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .sign(ca_key, hashes.SHA256())
        )
        write_atomic(paths["ca_key"], _pem_key(ca_key), 0o600)
        write_atomic(paths["ca"], ca.public_bytes(serialization.Encoding.PEM))
        paths["cert"].unlink(missing_ok=True)
    if _cert_names(paths["cert"]) == sorted(names) and paths["key"].is_file():
        return paths
    ca = x509.load_pem_x509_certificate(paths["ca"].read_bytes())
    loaded = serialization.load_pem_private_key(paths["ca_key"].read_bytes(), password=None)
    if not isinstance(loaded, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{paths['ca_key']} is not the EC key of central's Flower CA")
    key = ec.generate_private_key(ec.SECP384R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "qig superlink")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=SERVER_DAYS))
        .add_extension(_san(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(loaded, hashes.SHA256())
    )
    write_atomic(paths["key"], _pem_key(key), 0o600)
    write_atomic(paths["cert"], cert.public_bytes(serialization.Encoding.PEM))
    return paths


def check_ca(pem: str) -> str:
    """A CA certificate as PEM text (ValueError when it is not one)."""
    try:
        cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise ValueError(f"not a PEM certificate: {exc}") from None
    try:
        basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise ValueError("the certificate is not a CA's (no basic constraints)") from None
    if not basic.ca:
        raise ValueError("the certificate is not a CA's")
    return pem


# ---- an edge: the SuperNode's key ---------------------------------------------------------------
def supernode_key(directory: Path) -> tuple[Path, str]:
    """The SuperNode's private key file (made on first use) and its public key, one OpenSSH line
    (`ecdsa-sha2-nistp384 AAAA…`) as `flwr supernode register` reads it."""
    private, public = directory / "supernode.key", directory / "supernode.pub"
    if not private.is_file():
        key = ec.generate_private_key(ec.SECP384R1())
        raw = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        write_atomic(private, raw, 0o600)
        public.unlink(missing_ok=True)
    if not public.is_file():
        loaded = serialization.load_ssh_private_key(private.read_bytes(), password=None)
        line = loaded.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        write_atomic(public, line + b"\n")
    return private, public.read_text(encoding="ascii").strip()


def check_public_key(line: str) -> str:
    """An EC public key on a NIST curve in OpenSSH form, one line (ValueError otherwise)."""
    text = line.strip()
    if "\n" in text or len(text) > 1024:
        raise ValueError("one OpenSSH public key line (ecdsa-sha2-nistp384 …) is expected")
    try:
        key = serialization.load_ssh_public_key(text.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise ValueError(f"not an OpenSSH public key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in (
        "secp256r1",
        "secp384r1",
        "secp521r1",
    ):
        raise ValueError("Flower's SuperNode keys are EC keys on a NIST curve (P-256/384/521)")
    return text
