"""Language tags of audio tracks as two-letter codes."""

from __future__ import annotations

import pytest

from clasp_ingest.media.languages import two_letter


@pytest.mark.parametrize(
    ("tag", "expected"),
    [("eng", "en"), ("fre", "fr"), ("fra", "fr"), ("GER", "de"), ("deu", "de"), ("chi", "zh"), ("cze", "cs"),
     ("dut", "nl"), ("en", "en"), ("haw", "haw"), ("und", None), ("mul", None), ("zxx", None), ("", None),
     (None, None), ("english", None), ("e1g", None), ("xx", None), ("iw", "he")],
)  # fmt: skip
def test_two_letter(tag: str | None, expected: str | None) -> None:
    assert two_letter(tag) == expected
