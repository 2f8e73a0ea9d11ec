"""Engine-neutral search filters, and what a caller may pass as one.

Both engines (Qdrant Edge, qdrant-client) translate a :class:`Where` into their own filter.
Callers describe a filter as a :class:`SearchFilter` (our fields), a plain dict of those
fields, a ``qdrant_client.models.Filter`` (what langchain-qdrant users write), or its JSON
form (a dict with ``must`` / ``should`` / ``must_not``); :func:`to_where` turns any of them
into a :class:`Where`.

From a qdrant-client ``Filter`` this maps: ``must`` / ``should`` / ``must_not`` (nested
``Filter``\\ s too) of ``FieldCondition``\\ s with ``MatchValue`` (a string or integer),
``MatchAny`` or ``Range`` on payload keys (``metadata.<key>`` or ``page_content``).
Anything else (``min_should``, ``MatchExcept``, text matches, datetime ranges, geo, id, nested
array, is-empty/null and values-count conditions) raises :class:`~clasp_ingest.errors.FilterError`
naming the unsupported part.
"""

from __future__ import annotations

import functools
import math
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, Union

from clasp_ingest.errors import FilterError

if TYPE_CHECKING:
    from qdrant_client import models

__all__ = [
    "Clause",
    "Condition",
    "FilterLike",
    "SearchFilter",
    "Where",
    "meta_equals",
    "meta_key",
    "stored_form",
    "to_where",
    "where_from_qdrant",
]

#: SearchFilter's fields that match text: one value, or any of several.
_TEXT_KEYS = ("media_id", "source", "language")
#: The keys of a Qdrant filter in its JSON (REST) form.
_QDRANT_KEYS = frozenset({"must", "should", "must_not", "min_should"})


@dataclass(frozen=True)
class Condition:
    """One condition on a payload key: a match, a match-any, or a range (``gt``/``gte``/``lt``/``lte``)."""

    key: str
    value: str | int | None = None
    any_of: tuple[str, ...] | tuple[int, ...] | None = None
    gte: float | None = None
    lte: float | None = None
    gt: float | None = None
    lt: float | None = None

    def __post_init__(self) -> None:
        ranged = any(bound is not None for bound in (self.gte, self.lte, self.gt, self.lt))
        kinds = (self.value is not None) + (self.any_of is not None) + ranged
        if kinds != 1:
            raise ValueError(f"Condition on {self.key!r} needs exactly one of value, any_of, or a range")
        _check_text("filter key", self.key)
        for value in (self.value,) if self.any_of is None else self.any_of:
            _check_value(self.key, value)
        for name in ("gte", "lte", "gt", "lt"):
            bound = getattr(self, name)
            if bound is not None and not _finite(bound):
                raise FilterError(
                    f"filter range on {self.key!r}: {name} = {reprlib.repr(bound)} is not a finite "
                    "number; give finite bounds (leave a side out to leave it open)"
                )


#: The integers a payload (and Qdrant's match) holds: 64-bit.
_INT64 = range(-(2**63), 2**63)


def _finite(value: object) -> bool:
    """Whether ``value`` is a number a float holds: not NaN, not infinite, not a bool, not an
    integer past float's range (``math.isfinite(10**400)`` raises ``OverflowError``). A NaN
    range bound made Qdrant Edge panic (reported as a damaged collection); 10**400 raised."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _check_value(key: str, value: object) -> None:
    """Refuse a match value the engines cannot take: text UTF-8 cannot encode, an integer past
    64 bits (Qdrant Edge raised a bare ``TypeError``; qdrant-client matched nothing)."""
    if isinstance(value, str):
        _check_text(f"filter value for {key!r}", value)
    elif isinstance(value, int) and not isinstance(value, bool) and value not in _INT64:
        raise FilterError(
            f"filter value for {key!r} is out of range: {reprlib.repr(value)}; payload integers are 64-bit "
            "(-2**63 to 2**63 - 1)"
        )


def _check_text(what: str, value: str) -> None:
    """Refuse ``value`` (``what`` names it) where UTF-8 cannot encode it: lone surrogates, as
    Python keeps the bytes of a file name or command line that are not UTF-8 (``caf\\udce9``).
    Qdrant Edge raised a bare ``TypeError`` (``failed to extract enum Helper``) for them."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise FilterError(
            f"{what} {value!r} is not text: it holds bytes that are not UTF-8 (kept as surrogate "
            "escapes); give it as UTF-8 text (os.fsencode(value).decode('utf-8') reads such bytes "
            "as UTF-8 where it came from a file name or the command line)"
        ) from None


#: A member of a :class:`Where`: a condition, or a nested ``Where`` (a parenthesised group).
Clause: TypeAlias = Union[Condition, "Where"]


@dataclass(frozen=True)
class Where:
    """``must``: all hold; ``must_not``: none holds; ``should``: at least one holds (when given)."""

    must: tuple[Clause, ...] = ()
    must_not: tuple[Clause, ...] = ()
    should: tuple[Clause, ...] = ()

    def __and__(self, other: Where) -> Where:
        if self.should and other.should:
            return Where(must=(self, other))  # two "at least one of" groups stay separate
        return Where(self.must + other.must, self.must_not + other.must_not, self.should or other.should)

    @property
    def empty(self) -> bool:
        return not self.must and not self.must_not and not self.should


def meta_key(key: str) -> str:
    """The payload path of a span field: ``metadata.<key>``."""
    return f"metadata.{key}"


def meta_equals(key: str, value: str | int) -> Where:
    """``metadata.<key> == value``."""
    return Where((Condition(meta_key(key), value=value),))


def stored_form(key: str, value: str, *, path_if_unknown: bool = False) -> str:
    """A ``source`` or ``media_id`` as the store holds it: a local file's path (absolute, or one
    that exists; any other text too with ``path_if_unknown``) becomes its ``file://`` URI, and
    a source URI or path given as a media id becomes that source's id; a media id stays as it
    is. An http(s) URL is in the form its item is stored in (``café talk.opus`` →
    ``caf%C3%A9%20talk.opus``; RFC 3986's normal form; credentials redacted, so the URL that was
    ingested, token and all, names its item); an http(s) or ``file://`` URI's ``#fragment`` is
    dropped (a span link that ``search`` printed names its item). Anything else is kept (it
    matches nothing)."""
    import uuid

    from clasp_ingest.connectors.local import local_uri
    from clasp_ingest.connectors.urls import encoded_url, redact_url
    from clasp_ingest.types import media_id_for

    if key == "media_id":
        try:
            return str(uuid.UUID(value))
        except ValueError:
            pass
    is_uri = "://" in value
    local = not is_uri and (path_if_unknown or Path(value).is_absolute() or _exists(value))
    if not local:  # a path's bytes go into its URI as they are; other text is matched as text
        _check_text(f"SearchFilter {key}", value)
    if not (is_uri or local):
        return value
    if is_uri and value.lower().startswith(("http://", "https://", "file://")):
        value = value.partition("#")[0]  # a span's link (``...#t=32.7,37.188``) names its item
    uri = redact_url(encoded_url(value)) if is_uri else local_uri(value)  # a token as stored: REDACTED
    return media_id_for(uri) if key == "media_id" else uri


def _exists(value: str) -> bool:
    """Whether ``value`` names a file or folder; False for text that cannot be a path (a name
    longer than the file system allows raised ``OSError: File name too long``)."""
    try:
        return Path(value).exists()
    except OSError:
        return False


def _older_forms(key: str, value: str) -> tuple[str, ...]:
    """The forms earlier releases stored an http(s) ``value`` in, besides its normal form (what
    :func:`stored_form` gives): as typed (a raw space, before 2026-12-06) and percent-encoded
    only where it had to be (``%7e``, ``/./``); their media ids for ``media_id``. ``store list``
    shows such an item's source as stored, and ``--media-id`` given it found nothing."""
    from clasp_ingest.connectors.urls import redact_url, sent_url
    from clasp_ingest.types import media_id_for

    if value.partition("://")[0].lower() not in ("http", "https"):
        return ()
    forms = tuple(dict.fromkeys(redact_url(form) for form in (value, sent_url(value))))
    return tuple(media_id_for(form) for form in forms) if key == "media_id" else forms


def _language_form(value: str) -> str:
    """A language as the store holds it: ISO 639-1 where it has one (``EN``, ``en-US``, ``eng``
    → ``en``; ``fre`` → ``fr``), as a track's tag and a feed's language are stored."""
    from clasp_ingest.media.languages import ISO639_1, NO_LANGUAGE, tag_language

    code = tag_language(value)
    if value.strip().lower().replace("_", "-").split("-", 1)[0] in NO_LANGUAGE:  # 'und', 'und-Latn'
        raise FilterError(
            f"SearchFilter language {value!r} names no language (undetermined, several, none); items "
            "without a language are stored without one, so no filter finds them: leave language out"
        )
    if code is None or (len(code) == 2 and code not in ISO639_1):  # 'zz', 'xx-notalang'
        raise FilterError(
            f"SearchFilter language must be a language code (en, fr, eng, en-US...), got {value!r}"
        )
    return code


@dataclass(frozen=True)
class SearchFilter:
    """What a search may return: media items, sources, language, a time range.

    ``start_s_gte``/``end_s_lte`` (seconds) keep spans that lie inside the range. Several media
    ids, sources or languages (a tuple, list or set) match any of them. A local file's path
    given as ``source`` or ``media_id`` stands for its ``file://`` URI (what the store holds), and
    a source URI given as ``media_id`` for that source's id.
    """

    media_id: str | tuple[str, ...] | None = None
    source: str | tuple[str, ...] | None = None
    language: str | tuple[str, ...] | None = None
    start_s_gte: float | None = None
    end_s_lte: float | None = None
    #: ``(key, stored form, older form)``: the forms earlier releases stored an http(s)
    #: ``media_id`` or ``source`` in, which :meth:`where` matches too (:func:`_older_forms`).
    #: They come from the spelling given (raw characters, a signature), which the fields no
    #: longer hold, so this is an init field: ``dataclasses.replace`` hands it on, and each
    #: form stays while its stored form is still named. Compared: equal filters match alike.
    _older: tuple[tuple[str, str, str], ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        older: set[tuple[str, str, str]] = set()
        for key in _TEXT_KEYS:  # one, or several in any collection (kept as a tuple)
            value = getattr(self, key)
            if isinstance(value, list | set | frozenset):
                value = tuple(value)
                object.__setattr__(self, key, value)
            several = isinstance(value, tuple) and all(isinstance(v, str) for v in value)
            if value is not None and not isinstance(value, str) and not several:
                raise FilterError(f"SearchFilter {key} must be a string or strings, got {value!r}")
            if value is not None:
                form = _language_form if key == "language" else functools.partial(stored_form, key)
                given = (value,) if isinstance(value, str) else value
                named = tuple(form(v) for v in given)
                object.__setattr__(self, key, named[0] if isinstance(value, str) else named)
                if key != "language":
                    older |= self._older_of(key, given, named)
        object.__setattr__(self, "_older", tuple(sorted(older)))
        for key in ("start_s_gte", "end_s_lte"):
            value = getattr(self, key)
            if value is not None and not _finite(value):
                raise FilterError(
                    f"SearchFilter {key} must be a number of seconds, got {reprlib.repr(value)}"
                )
        if self.start_s_gte is not None and self.end_s_lte is not None and self.end_s_lte < self.start_s_gte:
            raise FilterError(f"SearchFilter time range is empty: {self.start_s_gte}..{self.end_s_lte}")

    def _older_of(
        self, key: str, given: tuple[str, ...], named: tuple[str, ...]
    ) -> set[tuple[str, str, str]]:
        """The older forms of ``key``'s values ``given`` (stored as ``named``), and those this
        filter was made with (by ``dataclasses.replace``) whose stored form is still named."""
        kept = {(k, stored, form) for k, stored, form in self._older if k == key and stored in named}
        made = {
            (key, stored, form)
            for v, stored in zip(given, named, strict=True)
            for form in _older_forms(key, v)
        }
        return {entry for entry in kept | made if entry[2] not in named}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchFilter:
        """Build from a plain mapping (LangChain ``filter`` kwargs); unknown keys are an error."""
        known = {name for name in cls.__dataclass_fields__ if not name.startswith("_")}
        # ``dataclasses.asdict`` of a filter holds its hidden field: left out, as before it was
        # one (older forms are not taken from outside)
        unknown = sorted(set(data) - known - {"_older"})
        if unknown:
            raise FilterError(
                f"unknown filter keys {unknown}; use some of {sorted(known)}, or pass a "
                "qdrant_client.models.Filter (or its JSON form with must/should/must_not)"
            )
        values: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known
        }
        return cls(**values)

    def where(self) -> Where:
        from clasp_ingest.media.languages import stored_spellings

        conds: list[Condition] = []
        for key in _TEXT_KEYS:
            value = getattr(self, key)
            if key == "language" and value is not None:  # 'he' also as stores made before hold it: 'iw'
                spelled = [stored_spellings(v) for v in ((value,) if isinstance(value, str) else value)]
                value = tuple(dict.fromkeys(s for spellings in spelled for s in spellings))
                value = value[0] if len(value) == 1 else value
            older = tuple(dict.fromkeys(form for k, _, form in self._older if k == key))
            if older and value is not None:  # an http(s) source as earlier releases stored it
                value = tuple(dict.fromkeys(((value,) if isinstance(value, str) else value) + older))
            if isinstance(value, tuple):
                conds.append(Condition(meta_key(key), any_of=value))
            elif value is not None:
                conds.append(Condition(meta_key(key), value=value))
        if self.start_s_gte is not None:
            conds.append(Condition(meta_key("start_s"), gte=self.start_s_gte))
        if self.end_s_lte is not None:
            conds.append(Condition(meta_key("end_s"), lte=self.end_s_lte))
        return Where(tuple(conds))


#: What a search, count or retriever accepts as a filter.
FilterLike: TypeAlias = Union[SearchFilter, Where, "models.Filter", Mapping[str, Any]]


def to_where(filters: FilterLike | None) -> Where:
    """Any accepted filter form as a :class:`Where` (``None`` → no condition).

    Raises :class:`~clasp_ingest.errors.FilterError` for an unknown form, unknown keys, or a
    Qdrant filter using something the engines' common subset lacks.
    """
    if filters is None:
        return Where()
    if isinstance(filters, Where):
        return filters
    if isinstance(filters, SearchFilter):
        return filters.where()
    if isinstance(filters, Mapping):
        if filters and set(filters) <= _QDRANT_KEYS:
            return where_from_qdrant(_qdrant_filter_from_json(filters))
        return SearchFilter.from_dict(filters).where()
    from qdrant_client import models

    if isinstance(filters, models.Filter):
        return where_from_qdrant(filters)
    raise FilterError(
        f"a filter must be a SearchFilter, a dict of its fields, or a qdrant_client.models.Filter; "
        f"got {type(filters).__name__}"
    )


def _qdrant_filter_from_json(data: Mapping[str, Any]) -> models.Filter:
    from pydantic import ValidationError
    from qdrant_client import models

    try:
        return models.Filter.model_validate(dict(data))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"] if isinstance(part, int) or part in _JSON_FIELDS)
        raise FilterError(
            f"not a valid Qdrant filter (JSON form): {where} = {first['input']!r} fits none of its "
            "types; build it with qdrant_client.models.Filter to see why"
        ) from None


#: Field names of a Qdrant filter's JSON form (to shorten pydantic's error locations).
_JSON_FIELDS = _QDRANT_KEYS | {"key", "match", "range", "value", "any", "except", "gt", "gte", "lt", "lte"}


def where_from_qdrant(qfilter: models.Filter) -> Where:
    """A qdrant-client ``Filter`` as a :class:`Where` (see the module doc for what maps)."""
    return _where(qfilter, "filter")


def _where(qfilter: models.Filter, path: str) -> Where:
    if qfilter.min_should is not None:
        _unsupported(f"{path}.min_should", "list the conditions under should (at least one must hold)")
    return Where(
        must=_clauses(qfilter.must, f"{path}.must"),
        must_not=_clauses(qfilter.must_not, f"{path}.must_not"),
        should=_clauses(qfilter.should, f"{path}.should"),
    )


def _clauses(items: Any, path: str) -> tuple[Clause, ...]:
    if items is None:
        return ()
    listed = items if isinstance(items, list) else [items]
    return tuple(_clause(item, f"{path}[{i}]") for i, item in enumerate(listed))


def _clause(item: Any, path: str) -> Clause:
    from qdrant_client import models

    if isinstance(item, models.Filter):
        return _where(item, path)
    if isinstance(item, models.FieldCondition):
        return _field(item, path)
    return _unsupported(f"{path} ({type(item).__name__})", "use FieldConditions and nested Filters")


def _field(cond: models.FieldCondition, path: str) -> Condition:
    _check_key(cond.key, path)
    others = [name for name in _OTHER_FIELD_TESTS if getattr(cond, name, None) is not None]
    if others:
        _unsupported(f"{path}.{others[0]} on {cond.key!r}", "use match (value or any) or range")
    if cond.match is not None and cond.range is not None:
        _unsupported(f"{path} on {cond.key!r} with both match and range", "use two conditions")
    if cond.match is not None:
        return _match_condition(cond.key, cond.match, path)
    if cond.range is not None:
        return _range_condition(cond.key, cond.range, path)
    return _unsupported(f"{path} on {cond.key!r} without a match or range", "add match=... or range=...")


#: FieldCondition tests other than ``match`` and ``range``, none of which is mapped.
_OTHER_FIELD_TESTS = ("geo_bounding_box", "geo_radius", "geo_polygon", "values_count", "is_empty", "is_null")


def _check_key(key: str, path: str) -> None:
    if key != "page_content" and not key.startswith("metadata."):
        raise FilterError(
            f"filter key {key!r} ({path}) is not in the payload: clasp-ingest keeps span fields under "
            f"'metadata.' (langchain-qdrant's layout); use 'metadata.{key}'"
        )


def _match_condition(key: str, match: Any, path: str) -> Condition:
    from qdrant_client import models

    if isinstance(match, models.MatchValue) and not isinstance(match.value, bool):
        return Condition(key, value=match.value)
    values = _plain_values(match.any) if isinstance(match, models.MatchAny) else None
    if values is not None:
        return Condition(key, any_of=values)
    kind = type(match).__name__
    if isinstance(match, models.MatchExcept):
        return _unsupported(f"{path}.match ({kind}) on {key!r}", "put a MatchAny under must_not instead")
    if isinstance(match, models.MatchValue | models.MatchAny):
        return _unsupported(f"{path}.match on {key!r} with {match!r}", "match strings or integers")
    return _unsupported(f"{path}.match ({kind}) on {key!r}", "use MatchValue or MatchAny")


def _plain_values(values: list[Any]) -> tuple[str, ...] | tuple[int, ...] | None:
    """``values`` as a tuple when all are strings or all integers (not booleans), else None."""
    strings = tuple(v for v in values if isinstance(v, str))
    integers = tuple(v for v in values if isinstance(v, int) and not isinstance(v, bool))
    if values and len(strings) == len(values):
        return strings
    if values and len(integers) == len(values):
        return integers
    return None


def _range_condition(key: str, bounds: Any, path: str) -> Condition:
    from qdrant_client import models

    if not isinstance(bounds, models.Range):
        remedy = "use a numeric Range"
        if key == "metadata.published":  # text; the same date as a number beside it
            remedy += " on 'metadata.published_ts' (the episode's date in seconds since 1970, UTC)"
        return _unsupported(f"{path}.range ({type(bounds).__name__}) on {key!r}", remedy)
    if all(b is None for b in (bounds.gte, bounds.gt, bounds.lte, bounds.lt)):
        return _unsupported(f"{path}.range on {key!r} without bounds", "give gt, gte, lt or lte")
    return Condition(key, gte=bounds.gte, gt=bounds.gt, lte=bounds.lte, lt=bounds.lt)


def _unsupported(part: str, remedy: str) -> Any:
    raise FilterError(
        f"unsupported Qdrant filter part: {part}; clasp-ingest maps must/should/must_not with "
        f"FieldCondition match (value, any) and range on payload keys; {remedy}"
    )
