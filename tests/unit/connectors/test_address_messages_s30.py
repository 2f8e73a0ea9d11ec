"""A refused address is named with the right article (tester 5: "is a unspecified address")."""

from __future__ import annotations

import pytest
from clasp_ingest.connectors.addresses import BlockedAddressError, address_problem


@pytest.mark.parametrize(
    ("address", "said"),
    [
        ("0.0.0.0", "0.0.0.0 is an unspecified address, refused"),
        ("::ffff:127.0.0.1", "::ffff:127.0.0.1 is an IPv4-in-IPv6 loopback address, refused"),
        ("127.0.0.1", "127.0.0.1 is a loopback address, refused"),
        ("10.0.0.1", "10.0.0.1 is a private address, refused"),
    ],
)
def test_a_refused_address_reads_as_english(address: str, said: str) -> None:
    problem = address_problem(address)
    assert problem is not None
    assert str(BlockedAddressError(address, address, problem)).startswith(said)
