"""English training text from WordNet 3.0 glosses (Debian ``wordnet-base``), in fortune format.

The fortune files give the corpus about 17,500 English sentences, and their vocabulary is
narrow (in all of them "bees" occurs 9 times, "nectar" never). WordNet's glosses cover the
whole dictionary: each synset's first definition ("small bright-colored tropical American
songbird with a curved bill for sucking nectar") and its usage examples ("they collected
nectar"), each made a sentence (capital first letter, final full stop). Lemma-like entries
(with ``_``) and parenthesised notes are left out; the corpus's own filter
(:func:`~clasp_ingest.training.corpus.is_sentence_like`: 3-25 words, ...) runs on top.

    python -m clasp_ingest.training.wordnet_text --out text/wordnet
    python -m clasp_ingest.training.corpus --out corpw --n 6000 --languages en \\
        --add-text en=$PWD/text/wordnet ...

Licence: WordNet 3.0 (Princeton University): use, copy, modify and distribute for any
purpose without fee, keeping its copyright notice (``/usr/share/doc/wordnet-base/copyright``).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from clasp_ingest.errors import ConfigError

__all__ = ["DEFAULT_WORDNET", "gloss_sentences", "main", "wordnet_sentences", "write_fortune_file"]

DEFAULT_WORDNET = Path("/usr/share/wordnet")
_PARTS = ("noun", "verb", "adj", "adv")
_QUOTED = re.compile(r'"([^"]+)"')


def gloss_sentences(gloss: str) -> list[str]:
    """The first definition and every quoted example of one gloss, as sentences."""
    examples = _QUOTED.findall(gloss)
    first = _QUOTED.sub("", gloss).split(";")[0]
    out = []
    for text in (first, *examples):
        text = " ".join(text.split()).strip(" ;,:")
        if not text or "_" in text or "(" in text:
            continue
        text = text[0].upper() + text[1:]
        out.append(text if text.endswith((".", "!", "?")) else text + ".")
    return out


def wordnet_sentences(root: Path = DEFAULT_WORDNET) -> Iterator[str]:
    """Sentences of every gloss in ``root``'s ``data.{noun,verb,adj,adv}``, in file order."""
    files = [root / f"data.{part}" for part in _PARTS]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise ConfigError(
            f"WordNet data not found: {', '.join(missing)}; install Debian's wordnet-base "
            "(make corpus-deps) or pass --root"
        )
    for path in files:
        with path.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("  ") or "|" not in line:  # the licence header
                    continue
                yield from gloss_sentences(line.split("|", 1)[1])


def write_fortune_file(sentences: Iterator[str], out: Path) -> int:
    """``%``-separated entries (the fortune format ``corpus --add-text`` reads); returns the count."""
    out.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with out.open("w", encoding="utf-8") as fh:
        for sentence in sentences:
            fh.write(("%\n" if count else "") + sentence + "\n")
            count += 1
    return count


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m clasp_ingest.training.wordnet_text", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", type=Path, required=True, help="fortune-format file to write")
    parser.add_argument("--root", type=Path, default=DEFAULT_WORDNET, help="WordNet dict folder")
    args = parser.parse_args(argv)
    try:
        count = write_fortune_file(wordnet_sentences(args.root), args.out)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{count} WordNet sentences in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
