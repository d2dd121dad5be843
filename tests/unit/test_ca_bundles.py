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
