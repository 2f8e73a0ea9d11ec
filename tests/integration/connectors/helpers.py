"""Fixture builders shared by the connector and flow tests: tones and RSS documents."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import soundfile as sf


def write_tone(path: Path, seconds: float = 0.5, freq: float = 440.0) -> Path:
    """A short 16 kHz wav (content only matters as bytes here)."""
    t = np.arange(int(16000 * seconds), dtype=np.float32) / 16000
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, 0.3 * np.sin(2 * np.pi * freq * t), 16000)
    return path


@dataclass(frozen=True)
class Episode:
    title: str
    url: str
    length: int
    published: str = "Tue, 03 Jun 2025 09:00:00 GMT"
    mime: str = "audio/wav"
    guid: str = ""


def rss(feed_title: str, episodes: Sequence[Episode], language: str | None = None) -> str:
    """An RSS 2.0 podcast document with one enclosure per episode (and ``<language>``, if given)."""
    items = "".join(
        f"<item><title>{escape(e.title)}</title><guid>{escape(e.guid or e.url)}</guid>"
        f"<pubDate>{e.published}</pubDate>"
        f'<enclosure url="{escape(e.url)}" length="{e.length}" type="{e.mime}"/></item>'
        for e in episodes
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
        f"<title>{escape(feed_title)}</title><link>http://example.invalid/</link>"
        f"<description>test</description>"
        f"{f'<language>{escape(language)}</language>' if language else ''}{items}</channel></rss>"
    )
