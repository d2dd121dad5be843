"""Which client a wrong password is counted against (pure logic, no database)."""

from __future__ import annotations

import pytest

from blog.services import UNKNOWN_CLIENT, sign_in_client


@pytest.mark.parametrize(
    ("address", "client"),
    [
        ("203.0.113.7", "203.0.113.7"),
        (" 203.0.113.7 ", "203.0.113.7"),
        # Every address of one /64 is one client: moving within it gains a guesser nothing
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        # An IPv4 client seen through an IPv6 socket is its IPv4 address
        ("::ffff:203.0.113.7", "203.0.113.7"),
        # Missing or unreadable: one shared bucket, never an error
        (None, UNKNOWN_CLIENT),
        ("", UNKNOWN_CLIENT),
        ("not-an-address", UNKNOWN_CLIENT),
        ("203.0.113.7, 10.0.0.1", UNKNOWN_CLIENT),
    ],
)
def test_sign_in_client_keys_ipv4_by_address_and_ipv6_by_its_64(
    address: str | None, client: str
) -> None:
    assert sign_in_client(address) == client


def test_no_client_key_is_the_account_wide_one() -> None:
    from blog.domain import ACCOUNT_WIDE

    assert ACCOUNT_WIDE not in {sign_in_client(a) for a in ("*", "0.0.0.0", "::", None)}
