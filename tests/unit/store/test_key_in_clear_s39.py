"""An API key for an ``http://`` server is reported once, as one log line, not as
qdrant-client's raw Python warning (its file and source line on every run). Opening a server
store sends nothing: the hosts below are never contacted (``.invalid`` never resolves)."""

from __future__ import annotations

import logging
import warnings

import pytest

from clasp_ingest import store as store_module
from clasp_ingest.store import open_store


@pytest.mark.parametrize(
    ("host", "own"),
    [
        ("localhost", True),
        ("api.localhost", True),
        ("127.0.0.1", True),
        ("127.9.9.9", True),
        ("[::1]", True),
        ("::1", True),
        ("qdrant", True),  # a compose service: docker-compose.yml's CLASP_QDRANT_URL
        ("qdrant.", True),
        ("qdrant.invalid", False),
        ("10.0.0.5", False),  # a private address may still cross a network that is not yours
        ("203.0.113.7", False),
        ("[2001:db8::1]", False),
    ],
)
def test_which_hosts_are_your_own(host: str, own: bool) -> None:
    assert store_module._host_of_your_own(host) is own


def _opened(url: str, api_key: str | None, caplog: pytest.LogCaptureFixture) -> list[str]:
    caplog.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # qdrant-client's UserWarning would raise here
        with caplog.at_level(logging.DEBUG, logger="clasp_ingest.store"):
            open_store(url=url, api_key=api_key).close()
    return [f"{r.levelname} {r.getMessage()}" for r in caplog.records if r.name == "clasp_ingest.store"]


def test_a_key_in_clear_is_one_warning_per_url(caplog: pytest.LogCaptureFixture) -> None:
    store_module._KEY_IN_CLEAR_SAID.clear()
    url = "http://reader:s3cret@qdrant.invalid:6333"
    said = _opened(url, "k", caplog)
    assert len(said) == 1 and said[0].startswith("WARNING the API key goes to"), said
    assert "unencrypted" in said[0] and "https://" in said[0] and "s3cret" not in said[0]
    assert _opened(url, "k", caplog) == []  # once per URL and process
    assert [line.split()[0] for line in _opened("http://qdrant:6333", "k", caplog)] == ["DEBUG"]


@pytest.mark.parametrize(
    ("url", "api_key"), [("https://qdrant.invalid", "k"), ("http://qdrant.invalid:6334", None)]
)
def test_no_word_without_a_key_in_clear(
    url: str, api_key: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    store_module._KEY_IN_CLEAR_SAID.clear()
    assert _opened(url, api_key, caplog) == []


def test_a_servers_password_and_signed_query_are_never_shown() -> None:
    """Every store error named the server by its URL as given: ``from_url("https://user:pw@...")``
    printed the password, and ``?api_key=`` the key (a reviewer's RAG app, and ``search --qdrant-url``)."""
    with open_store(url="https://reader:pw-s39@qdrant.invalid:6333/?api_key=key-s39") as store:
        shown = f"{store.location} {store._no_collection()}"
    assert "pw-s39" not in shown and "key-s39" not in shown
    assert "qdrant.invalid:6333" in store.location and "reader" in store.location
