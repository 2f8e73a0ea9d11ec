"""The query model a collection needs: the text side of the model that made its vectors.

A collection records its model (id, dimension and the preset or directory it came from);
:func:`query_model_for` loads only that model's text side
(:func:`~clasp_ingest.model.load_query_model`: no torch for clasp-mini), or the model named
instead, after checking that it makes the collection's vectors.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from clasp_ingest.errors import CollectionMismatchError

if TYPE_CHECKING:
    from clasp_ingest.config import Settings
    from clasp_ingest.model.base import QueryEncoder
    from clasp_ingest.store.base import CollectionIdentity, QdrantStore, StoreNames

__all__ = ["fits_collection", "query_model_for", "search_model", "store_names"]


def store_names(constructor: str) -> StoreNames:
    """How a ``from_path`` / ``from_url`` / ``from_settings`` caller named its store, for the
    store's messages (a missing collection, a bad URL or key): its arguments or variables, not
    the CLI's options."""
    from clasp_ingest.store import StoreNames

    if constructor == "from_settings":
        return StoreNames(
            url="CLASP_QDRANT_URL",
            api_key="CLASP_QDRANT_API_KEY",
            store="CLASP_COLLECTION / CLASP_QDRANT_PATH / CLASP_QDRANT_URL",
            name="CLASP_COLLECTION",
            path="CLASP_QDRANT_PATH",
        )
    if constructor == "from_url":
        return StoreNames(
            url="from_url(URL)",
            api_key="from_url(URL, api_key=...)",
            store="from_url(URL, collection=...)",
            name="from_url(URL, collection=...)",
        )
    return StoreNames(
        url="from_url(URL)",  # the other constructor, for a server
        store="from_path(PATH, collection=...)",
        name="from_path(PATH, collection=...)",
        path="from_path(PATH)",
    )


def query_model_for(
    store: QdrantStore, model: str | None = None, *, device: str = "auto", model_dir: Path | None = None
) -> QueryEncoder:
    """The query encoder for ``store``'s collection: ``model`` if given, else the one it records.

    Raises ``StoreError`` when the collection does not exist, ``ModelLoadError`` when its
    model cannot be found, and ``CollectionMismatchError`` when ``model`` makes other vectors
    than the collection holds.
    """
    from clasp_ingest.model.query import find_model, load_query_model

    identity = store.require_collection()
    name = model or find_model(identity.model_id, identity.source)
    encoder = load_query_model(name, device=device, model_dir=model_dir)
    if not fits_collection(identity, encoder):
        raise CollectionMismatchError(
            f"collection {store.collection!r} holds {identity.dim}-d vectors of model {identity.model_id!r}, "
            f"but model {name!r} makes {encoder.dim}-d vectors of {encoder.model_id!r}; "
            + _own_model_remedy(identity)
        )
    return encoder


def _own_model_remedy(identity: CollectionIdentity) -> str:
    """What to do when the model named does not fit: drop it, where the collection's own model is
    found; else (an older release's model, with no preset now) that advice led back to the "no
    preset makes vectors of model ..." error, and each message sent the user to the other."""
    from clasp_ingest.errors import ModelLoadError
    from clasp_ingest.model.query import find_model

    try:
        find_model(identity.model_id, identity.source)
    except ModelLoadError:
        return (
            "no preset of this clasp-ingest version makes the collection's vectors: pass --model with "
            f"the directory of model {identity.model_id!r}, or ingest again with a current model into "
            "another collection (--collection NAME) or over this one (--recreate)"
        )
    return (
        "drop --model (and CLASP_MODEL; in Python the model argument) to search with the "
        "collection's own model"
    )


def fits_collection(identity: CollectionIdentity, model: Any) -> bool:
    """Whether ``model`` makes the query vectors of a collection of ``identity``: its config
    searches that model id (:func:`~clasp_ingest.model.query.searches`; a model without a
    config, its ``model_id`` if it has one) and its width matches."""
    from clasp_ingest.model.query import searches

    config = getattr(model, "config", None)
    if config is not None:
        fits = searches(config, identity.model_id)
    else:
        fits = getattr(model, "model_id", None) in (None, identity.model_id)
    return fits and getattr(model, "dim", identity.dim) == identity.dim


def search_model(store: QdrantStore, model: str | None, settings: Settings) -> QueryEncoder:
    """:func:`query_model_for` with ``settings``: their model only when set (``CLASP_MODEL``)."""
    name = model or (settings.model if "model" in settings.model_fields_set else None)
    return query_model_for(store, name, device=settings.device, model_dir=settings.model_dir)
