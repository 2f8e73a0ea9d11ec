"""``clasp-ingest search "QUERY"``: the best audio spans for a text query.

The query is embedded by the model the collection records (its preset name or model
directory), unless ``--model`` (or ``CLASP_MODEL``) names one; only that model's text side
loads (:func:`~clasp_ingest.model.load_query_model`), so a search starts in about a second.
An empty query is refused; a query longer than the text encoder's token limit is cut to it,
and one ``warning: ...`` line on stderr says so.

``--transcribe`` also gives the words: each returned span without them is cut from its source,
transcribed with Whisper (faster-whisper; the bundled Whisper-base unless ``--whisper-model``)
and its words stored in the collection, so the next search shows them at once.

``--rerank N`` ranks in two stages: CLASP finds the best N spans, their words are obtained as
with ``--transcribe`` (only those without words are transcribed), scored against the query with
the model's text tower, and the two scores fused; the best ``--k`` are shown by fused score
(``--json`` rows gain ``clasp_score`` and ``text_score``).

``--hybrid`` searches a collection ingested with ``ingest --transcribe``: one Qdrant Query API
call with three prefetches (the ``clasp`` vectors; the words' dense ``text`` vectors, the
model's text tower; their sparse ``words`` vectors, IDF by Qdrant) fused by reciprocal rank
fusion, on both engines (Qdrant Edge 0.9 and qdrant-client/servers run it natively); the
score shown is the fused one. A collection without word vectors is refused with the remedy.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import typer
from clasp_ingest.retriever.loading import search_model

from clasp_ingest.config import Settings
from clasp_ingest.log import warnings_as_lines
from clasp_ingest.store.cli_store import (
    StoreCollection,
    StoreKey,
    StorePath,
    StoreUrl,
    number_in,
    refuse_empty,
)

if TYPE_CHECKING:
    from clasp_ingest.transcribe import Transcriber

__all__ = ["MAX_CONTEXT", "MAX_SPANS", "register", "search_model"]

#: The most spans ``--k``, ``--rerank`` and ``--group`` may ask for.
MAX_SPANS = 10_000
#: The most neighbouring segments ``--context`` may add on each side.
MAX_CONTEXT = 1_000


def search(
    ctx: typer.Context,
    query: str = typer.Argument(..., help="What to look for, in any language."),
    k: int = typer.Option(5, "--k", "-k", min=1, max=MAX_SPANS, help="Number of spans."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of a table."),
    model: str | None = typer.Option(
        None,
        "--model",
        "-m",
        parser=lambda value: refuse_empty(value, "give a model preset or folder, or leave the option out"),
        help="Model preset or directory (default: CLASP_MODEL where set, else the collection's own).",
    ),
    qdrant_path: StorePath = None,
    qdrant_url: StoreUrl = None,
    api_key: StoreKey = None,
    collection: StoreCollection = None,
    media_id: str | None = typer.Option(
        None,
        "--media-id",
        parser=lambda value: refuse_empty(value, "give a media id, a source URI or a file, or leave it out"),
        help="Only this media item: its media id, its source URI ('store list' prints them) "
        "or its local file.",
    ),
    group: int | None = typer.Option(
        None, min=1, max=MAX_SPANS, help="At most this many spans per media item."
    ),
    merge: bool = typer.Option(
        False, help="Merge hits of one item that overlap or lie within --merge-gap seconds of each other."
    ),
    merge_gap: float = typer.Option(
        0.5,
        parser=number_in(0.0, 3600.0),
        min=0.0,
        max=3600.0,
        help="With --merge: the longest pause between two hits that are joined (the pause between "
        "two sentences is often about 1 s); segments in a wider gap join the span too.",
    ),
    context: int = typer.Option(
        0,
        min=0,
        max=MAX_CONTEXT,
        help="Widen spans by this many neighbouring segments (not over a better span: no audio twice).",
    ),
    transcribe: bool = typer.Option(
        False,
        "--transcribe",
        help="Transcribe returned spans that have no words yet (Whisper) and store the words.",
    ),
    rerank: int | None = typer.Option(
        None,
        "--rerank",
        min=1,
        max=MAX_SPANS,
        help="Rerank CLASP's best N spans (N >= --k) by their words: implies --transcribe for those N.",
    ),
    hybrid: bool = typer.Option(
        False,
        "--hybrid",
        help="Hybrid search of a collection ingested with --transcribe: one Qdrant query fusing the "
        "CLASP, text and sparse words rankings by RRF (both engines). Not with --rerank or --group.",
    ),
    whisper_model: str = typer.Option(
        "whisper-base",
        parser=lambda value: refuse_empty(
            value, "give 'whisper-base', a CTranslate2 folder or a faster-whisper model name, or leave it out"
        ),
        help="Whisper model for --transcribe and --rerank: 'whisper-base' (bundled), a CTranslate2 "
        "folder or a faster-whisper model name.",
    ),
    translate: bool = typer.Option(
        False, help="With --transcribe: also store an English translation of non-English spans."
    ),
    allow_private_hosts: bool = typer.Option(
        False,
        "--allow-private-hosts",
        help="With --transcribe/--rerank: let the cuts of items stored under http(s) URLs reach "
        "loopback/private/link-local hosts (media served on your LAN) [CLASP_ALLOW_PRIVATE_HOSTS].",
    ),
) -> None:
    """Search the ingested media by text; prints source, span, score, words and a deep link.

    A query longer than the model's text encoder reads (clasp-mini: 512 tokens) is cut to that limit for the speech match, with a warning.
    """  # noqa: E501 - one paragraph of --help
    from clasp_ingest.connectors.urls import redact_url
    from clasp_ingest.retriever import ClaspRetriever
    from clasp_ingest.retriever.retriever import is_empty_query

    from clasp_ingest.errors import ConfigError
    from clasp_ingest.store import SearchFilter
    from clasp_ingest.store.cli_store import open_configured_store

    _check_combination(k, rerank, group, hybrid)
    words = transcribe or rerank is not None
    _check_dependents(ctx, translate=translate, words=words, merge=merge, private=allow_private_hosts)
    query = _typed_text(query, "the query")
    if media_id is not None and "://" in media_id:  # a URI is text (a path keeps its bytes)
        media_id = _typed_text(media_id, "--media-id")
    if is_empty_query(query):
        raise ConfigError(
            "the query is empty; say what to look for, e.g. clasp-ingest search 'photosynthesis'"
        )
    words = transcribe or rerank is not None
    settings = Settings.model_validate({})  # reads CLASP_* like Settings()
    with open_configured_store(qdrant_path, qdrant_url, api_key, collection) as store:
        retriever = ClaspRetriever(
            store=store,
            model=search_model(store, model, settings),
            k=k,
            filter=SearchFilter(media_id=_media_id(media_id)) if media_id is not None else None,
            group_by_media=group,
            merge=merge,
            merge_gap_s=merge_gap,
            context=context,
            rerank=rerank,
            hybrid=hybrid,
            transcribe="lazy" if words else "never",
            transcriber=_transcriber(whisper_model, translate, settings) if words else None,
            allow_private_hosts=True if allow_private_hosts else None,  # else CLASP_ALLOW_PRIVATE_HOSTS
        )
        with warnings_as_lines(
            "clasp_ingest.model.query", "clasp_ingest.retriever.words", "clasp_ingest.retriever"
        ):
            docs = retriever.invoke(query)
        if not docs and media_id and store.count(retriever.filter) == 0:
            typer.echo(
                f"warning: no stored item matches --media-id {redact_url(media_id)!r}; 'clasp-ingest store "
                "list' shows the sources and media ids stored",
                err=True,
            )
    keys = ("source", "media_id", "title", "start_s", "end_s", "score", "url")
    rows = [
        {**{key: doc.metadata.get(key) for key in keys}, "text": doc.metadata.get("transcript"),
         "text_language": doc.metadata.get("transcript_language"),
         "text_en": doc.metadata.get("transcript_en") or None,
         **({key: doc.metadata.get(key) for key in ("clasp_score", "text_score")} if rerank else {})}
        for doc in docs
    ]  # fmt: skip
    if as_json:
        typer.echo(json.dumps(rows))  # \u escapes: valid JSON whatever the terminal can show
        return
    _print_table(query, rows)


def _typed_text(value: str, what: str) -> str:
    """Command-line text as it was typed. Python decodes the command line with the locale's
    encoding, keeping the bytes it cannot decode as surrogate escapes: in a C or POSIX locale
    without UTF-8 mode (``LC_ALL=C PYTHONUTF8=0``), UTF-8 typed in a terminal arrived as
    ``'\\udce7\\udc8c\\udcab...'``, so "猫在睡觉" was refused as empty and "¿Qué ...?" embedded as other
    text. Such bytes are read as UTF-8 (the terminal's, as README takes an ASCII locale to be);
    bytes that are no UTF-8 either are refused, naming the remedy. ``what`` names the input."""
    if not any("\udc80" <= char <= "\udcff" for char in value):
        return value
    import sys

    from clasp_ingest.errors import ConfigError

    try:
        return os.fsencode(value).decode("utf-8")
    except (UnicodeDecodeError, UnicodeEncodeError):
        encoding = sys.getfilesystemencoding()  # the locale's, as Python decoded the command line
        if encoding.lower().replace("-", "") == "utf8":  # the locale is right; the terminal is not
            remedy = "the locale is UTF-8: set the terminal's encoding to UTF-8 too, and type it again"
            locale = ""
        else:
            remedy = (
                "type it in a UTF-8 terminal, or set the locale to the terminal's encoding (e.g. "
                "export LC_ALL=C.UTF-8)"
            )
            locale = f" nor {encoding} (the locale's)"
        raise ConfigError(f"{what} is not text: its bytes are not UTF-8{locale}; {remedy}") from None


def _check_combination(k: int, rerank: int | None, group: int | None, hybrid: bool) -> None:
    """Options that do not go together are bad usage (exit 2), whatever the store holds."""
    if rerank is not None and rerank < k:
        raise typer.BadParameter(
            f"{rerank} is smaller than --k {k}; give --rerank N >= --k (e.g. --rerank 10)",
            param_hint="'--rerank'",
        )
    if hybrid and (rerank is not None or group is not None):
        raise typer.BadParameter(
            "not with --rerank or --group (--hybrid ranks by the stored words already); drop "
            "those, or search without --hybrid",
            param_hint="'--hybrid'",
        )


def _check_dependents(
    ctx: typer.Context, *, translate: bool, words: bool, merge: bool, private: bool = False
) -> None:
    """An option that only works with another, given without it, is bad usage (exit 2): the
    search would run without it and the user would not learn why (no translations, no merge)."""
    for needs_words, name in ((translate, "--translate"), (private, "--allow-private-hosts")):
        if needs_words and not words:
            raise typer.BadParameter(
                f"{name} needs --transcribe (or --rerank, which transcribes the spans); add it, "
                f"or drop {name}",
                param_hint=f"'{name}'",
            )
    given = ctx.get_parameter_source("merge_gap")  # typer's own click: compared by name
    if not merge and given is not None and given.name != "DEFAULT":
        raise typer.BadParameter(
            "--merge-gap needs --merge (it is the gap merged hits may span); add --merge, or drop "
            "--merge-gap",
            param_hint="'--merge-gap'",
        )


def _transcriber(model: str, translate: bool, settings: Settings) -> Transcriber:
    from clasp_ingest.transcribe import Transcriber, TranscriberOptions

    return Transcriber(TranscriberOptions(model=model, device=settings.device, translate=translate))


#: Characters of the query repeated in the table's first line.
_SHOWN_QUERY = 100


def _print_table(query: str, rows: list[dict[str, Any]]) -> None:
    """One block per hit: rank, score, span and title; the link on a line of its own (never
    wrapped, so it stays clickable); the words when the span has them."""
    from clasp_ingest.log import one_line
    from clasp_ingest.store import format_timestamp

    shown = query if len(query) <= _SHOWN_QUERY else query[: _SHOWN_QUERY - 1] + "…"
    spans = "span" if len(rows) == 1 else "spans"
    typer.echo(f"{len(rows)} {spans} for {shown!r}" if rows else f"no spans for {shown!r}")  # repr: one line
    for rank, row in enumerate(rows, start=1):
        span = f"{format_timestamp(row['start_s'])}–{format_timestamp(row['end_s'])}"
        scores = f" (clasp {_score(row.get('clasp_score'))}, words {_score(row.get('text_score'))})"
        fused = scores if "text_score" in row else ""
        typer.echo(f"\n{rank:>2}. {row['score']:.3f}{fused}  {span}  {one_line(row['title'])}")
        typer.echo(f"    {one_line(row['url'])}")
        if row["text"]:
            typer.echo(f"    \u201c{one_line(row['text'])}\u201d")
        if row.get("text_en"):  # --translate
            typer.echo(f"    en: \u201c{one_line(row['text_en'])}\u201d")


def _score(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def register(app: typer.Typer) -> None:
    """Add the top-level ``search`` command."""
    app.command("search")(search)


def _media_id(given: str) -> str:
    """The media id ``--media-id`` names: a media id as it is, else that of a source URI or of a
    local file (its ``file://`` URI, as the local connector makes it, even once deleted)."""
    from clasp_ingest.store.filters import stored_form

    if "://" in given:  # SearchFilter matches it in the forms earlier releases stored too
        return given
    return stored_form("media_id", given, path_if_unknown=True)
