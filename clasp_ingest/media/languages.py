"""Language tags of media streams as the two-letter codes search filters use.

Containers tag audio tracks with ISO 639-2 codes (``eng``, ``fre``/``fra``, ``ger``/``deu``);
feeds and :class:`~clasp_ingest.store.SearchFilter` use ISO 639-1 (``en``, ``fr``, ``de``).
:func:`two_letter` maps the languages of this table (the ones with a 639-1 code that media
commonly carry) and keeps any other three-letter code as it is, so it still filters.
"""

from __future__ import annotations

__all__ = ["ISO639_1", "NO_LANGUAGE", "stored_spellings", "tag_language", "two_letter"]

_ISO639_1_TABLE = """
    aa ab ae af ak am an ar as av ay az ba be bg bh bi bm bn bo br bs ca ce ch co cr cs cu cv cy
    da de dv dz ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht hu
    hy hz ia id ie ig ii ik io is it iu ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw ky la lb
    lg li ln lo lt lu lv mg mh mi mk ml mn mr ms mt my na nb nd ne ng nl nn no nr nv ny oc oj om
    or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd se sg si sk sl sm sn so sq sr ss st su sv sw
    ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz ve vi vo wa wo xh yi yo za zh zu
"""
#: Every ISO 639-1 code (and Serbo-Croatian's ``sh``, deprecated but still written): a
#: two-letter filter value outside it is a typo, not a language.
ISO639_1 = frozenset([*_ISO639_1_TABLE.split(), "sh"])
#: Withdrawn ISO 639-1 codes that old tags and feeds still carry (and Whisper's ``jw`` for
#: Javanese), and their current ones.
_WITHDRAWN = {"iw": "he", "in": "id", "ji": "yi", "mo": "ro", "jw": "jv"}

#: ISO 639-2 (bibliographic and terminological forms) -> ISO 639-1.
_ISO639_2_TO_1 = {
    "afr": "af", "alb": "sq", "sqi": "sq", "amh": "am", "ara": "ar", "arm": "hy", "hye": "hy",
    "aze": "az", "baq": "eu", "eus": "eu", "bel": "be", "ben": "bn", "bos": "bs", "bre": "br",
    "bul": "bg", "bur": "my", "mya": "my", "cat": "ca", "chi": "zh", "zho": "zh", "hrv": "hr",
    "cze": "cs", "ces": "cs", "dan": "da", "dut": "nl", "nld": "nl", "eng": "en", "epo": "eo",
    "est": "et", "fin": "fi", "fre": "fr", "fra": "fr", "glg": "gl", "geo": "ka", "kat": "ka",
    "ger": "de", "deu": "de", "gre": "el", "ell": "el", "guj": "gu", "heb": "he", "hin": "hi",
    "hun": "hu", "ice": "is", "isl": "is", "ind": "id", "gle": "ga", "ita": "it", "jpn": "ja",
    "kan": "kn", "kaz": "kk", "khm": "km", "kor": "ko", "kur": "ku", "lao": "lo", "lat": "la",
    "lav": "lv", "lit": "lt", "ltz": "lb", "mac": "mk", "mkd": "mk", "may": "ms", "msa": "ms",
    "mal": "ml", "mlt": "mt", "mar": "mr", "mon": "mn", "nep": "ne", "nor": "no", "nob": "nb",
    "nno": "nn", "per": "fa", "fas": "fa", "pol": "pl", "por": "pt", "pan": "pa", "rum": "ro",
    "ron": "ro", "rus": "ru", "srp": "sr", "sin": "si", "slo": "sk", "slk": "sk", "slv": "sl",
    "som": "so", "spa": "es", "swa": "sw", "swe": "sv", "tgl": "tl", "tam": "ta", "tel": "te",
    "tha": "th", "tib": "bo", "bod": "bo", "tur": "tr", "ukr": "uk", "urd": "ur", "uzb": "uz",
    "vie": "vi", "wel": "cy", "cym": "cy", "yid": "yi", "yor": "yo", "zul": "zu", "fil": "tl",
}  # fmt: skip
#: ISO 639-2 codes that name no language: undetermined, multiple, no linguistic content, uncoded, local.
NO_LANGUAGE = frozenset({"und", "mul", "zxx", "mis", "qaa"})


def two_letter(tag: str | None) -> str | None:
    """``tag`` (ISO 639-1 or 639-2, any case) as ISO 639-1 where it has one; None for no language
    (and for two letters that are no ISO 639-1 code: ``xx``)."""
    code = (tag or "").strip().lower()
    if not (2 <= len(code) <= 3 and code.isascii() and code.isalpha()) or code in NO_LANGUAGE:
        return None
    code = _ISO639_2_TO_1.get(code) or _WITHDRAWN.get(code, code)
    return None if len(code) == 2 and code not in ISO639_1 else code  # 'xx': stored, and no filter took it


def tag_language(tag: str | None) -> str | None:
    """A language tag's primary subtag as :func:`two_letter` gives it (``en-US``, ``pt_BR``,
    ``EN``, ``eng`` → ``en``, ``pt``, ``en``, ``en``): feeds' languages and search filters."""
    return two_letter((tag or "").strip().replace("_", "-").split("-", 1)[0])


def stored_spellings(code: str) -> tuple[str, ...]:
    """The spellings under which a store may hold the language ``code`` (as :func:`two_letter`
    gives it): itself, and the withdrawn codes that stores written before 2026-12-06 kept as
    they came (``he``: ``he``, ``iw``)."""
    return (code, *sorted(old for old, new in _WITHDRAWN.items() if new == code))
