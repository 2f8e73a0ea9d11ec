"""The GPU bound of the flows: each embedding batch holds one GPU slot while it runs.

Two limits apply, both per *batch* (never per media item, so decoding and writing of other
items go on meanwhile):

- across workers: a slot of the Prefect concurrency limit ``tag:gpu``, the global limit that
  ``prefect concurrency-limit create gpu N`` makes (tag limits are global limits named
  ``tag:<tag>`` since Prefect 3.4.19). The flow looks it up once per run
  (:func:`gpu_limit`); without it, batches take no Prefect slot and make no API call;
- inside a process: ``CLASP_GPU_SLOTS`` batches at once (default 1), a semaphore made on
  first use in the process that embeds, so nothing of it travels with a pickled task.

Batches are no Prefect tasks of their own: a task run keeps its parameters (the batch's
waveforms) alive in the parent task's transaction until the media item ends, so a per-batch
task made an item's memory grow with its length (``bench/bench_flow_memory.py``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager

import numpy as np

from clasp_ingest.model.base import AudioTextEncoder

__all__ = ["GPU_LIMIT", "embed_batch", "gpu_limit", "gpu_slot", "process_slots"]

log = logging.getLogger("clasp_ingest.flows")

#: The Prefect global concurrency limit behind the ``gpu`` tag limit.
GPU_LIMIT = "tag:gpu"

_SLOTS_LOCK = threading.Lock()
_SLOTS: list[threading.BoundedSemaphore] = []


def process_slots() -> threading.BoundedSemaphore:
    """This process's semaphore of ``CLASP_GPU_SLOTS`` embedding batches, made on first use (a
    bad value fails the run or command at its start, where the settings are read)."""
    from clasp_ingest.config import Settings

    with _SLOTS_LOCK:
        if not _SLOTS:
            _SLOTS.append(threading.BoundedSemaphore(Settings.from_env().gpu_slots))
        return _SLOTS[0]


def gpu_limit(name: str = GPU_LIMIT) -> str | None:
    """``name`` when the Prefect API has that concurrency limit (active), else None."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            limit = client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            return None
    if not limit.active:
        return None
    log.info("embedding batches take slots of the Prefect concurrency limit %r (%d)", name, limit.limit)
    return name


@contextmanager
def gpu_slot(limit: str | None) -> Iterator[None]:
    """Hold one of this process's GPU slots, then one slot of the Prefect limit ``limit``."""
    with process_slots():
        if limit is None:
            yield
            return
        from prefect.concurrency.sync import concurrency

        waiting = threading.Timer(SLOT_WAIT_SAID_S, _say_waiting, args=(limit,))
        waiting.daemon = True
        waiting.start()
        with ExitStack() as held:
            try:
                # a limit deleted meanwhile: a warning, no bound. The lease is renewed while held;
                # a process killed holding it (kill -9, OOM) frees its slot when the lease runs
                # out: Prefect's default of 300 s stalled the next run for five minutes, silently
                held.enter_context(concurrency(limit, occupy=1, lease_duration=SLOT_LEASE_S))
            finally:
                waiting.cancel()
            yield


#: Seconds of a GPU slot's lease (renewed while held; what a killed holder keeps it).
SLOT_LEASE_S = 60.0
#: Seconds a batch waits for a GPU slot before the wait is logged.
SLOT_WAIT_SAID_S = 15.0


def _say_waiting(limit: str) -> None:
    log.info(
        "waiting for a slot of the Prefect concurrency limit %r: other runs' batches hold them (on a "
        "Prefect server, a run killed while holding one frees it within %.0f s)",
        limit,
        SLOT_LEASE_S,
    )


def embed_batch(model: AudioTextEncoder, waveforms: Sequence[np.ndarray], limit: str | None) -> np.ndarray:
    """Embed one batch of 16 kHz waveforms while holding a GPU slot."""
    with gpu_slot(limit):
        return model.encode_audio(waveforms)
