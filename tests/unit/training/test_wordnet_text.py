"""WordNet glosses as corpus text: parsing real-format data lines, the fortune file, the corpus reading it."""

from __future__ import annotations

from pathlib import Path

import pytest

from clasp_ingest.training.corpus import fortune_sentences
from clasp_ingest.training.wordnet_text import gloss_sentences, main, wordnet_sentences

# Lines in the format of WordNet 3.0's data.* files (offset, lexfile, pos, words, pointers | gloss).
_HEADER = "  1 This software and database is being provided to you, the LICENSEE, by\n"
_NOUN = (
    "01538955 05 n 01 honeycreeper 1 003 @ 01525720 n 0000 | small bright-colored tropical American "
    'songbird with a curved bill for sucking nectar; "honeycreepers visit flowers at dawn"\n'
    "02206856 05 n 01 bee 0 002 @ 02203152 n 0000 | any of numerous hairy-bodied insects including "
    "social and solitary species (see also drone)\n"
    "09999999 05 n 01 x 0 000 | see_also_this\n"
)
_VERB = '01212345 31 v 01 buzz 0 000 | make a buzzing sound; "the bees buzzed"; "quiet!"\n'


def _wordnet(root: Path) -> Path:
    root.mkdir()
    (root / "data.noun").write_text(_HEADER + _NOUN, encoding="utf-8")
    (root / "data.verb").write_text(_HEADER + _VERB, encoding="utf-8")
    (root / "data.adj").write_text(_HEADER, encoding="utf-8")
    (root / "data.adv").write_text(_HEADER, encoding="utf-8")
    return root


def test_a_gloss_gives_its_first_definition_and_its_examples_as_sentences() -> None:
    assert gloss_sentences(' make a buzzing sound; a second sense; "the bees buzzed"; "quiet!"') == [
        "Make a buzzing sound.",
        "The bees buzzed.",
        "Quiet!",
    ]
    assert gloss_sentences(" see_also_this ") == []  # lemma-like
    assert gloss_sentences(" insects (see also drone)") == []  # parenthesised note


def test_the_fortune_file_feeds_the_corpus_sentence_filter(tmp_path: Path) -> None:
    root = _wordnet(tmp_path / "wn")
    assert list(wordnet_sentences(root)) == [
        "Small bright-colored tropical American songbird with a curved bill for sucking nectar.",
        "Honeycreepers visit flowers at dawn.",
        "Make a buzzing sound.",
        "The bees buzzed.",
        "Quiet!",
    ]
    out = tmp_path / "text" / "wordnet"
    assert main(["--root", str(root), "--out", str(out)]) == 0
    # the corpus reads it like any fortune file; its filter drops the one-word "Quiet!"
    assert list(fortune_sentences([out])) == [
        "Small bright-colored tropical American songbird with a curved bill for sucking nectar.",
        "Honeycreepers visit flowers at dawn.",
        "Make a buzzing sound.",
        "The bees buzzed.",
    ]


def test_missing_wordnet_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--root", str(tmp_path), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "data.noun" in err and "wordnet-base" in err
