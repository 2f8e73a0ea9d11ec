"""A model load that runs out of memory or address space is told apart from other load
failures (tester 1 of session 29, bug 6): it stops the run as one ``ModelLoadError`` naming
the model and the remedy, and ONNX Runtime's failure does not fall back to torch, which needs more."""

from __future__ import annotations

import errno

import pytest

from clasp_ingest.errors import ModelLoadError
from clasp_ingest.model.inference import no_memory_message, out_of_memory


def _wrapped(inner: BaseException, outer: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except type(inner) as exc:
            raise outer from exc
    except type(outer) as exc:
        return exc


@pytest.mark.parametrize(
    "exc",
    [
        MemoryError(),
        OSError(errno.ENOMEM, "Cannot allocate memory"),
        RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB"),
        _wrapped(RuntimeError("mkl_malloc: failed to allocate memory"),
                 ModelLoadError("CTranslate2 could not load /m on device='cpu' with compute_type='int8'")),
    ],
)  # fmt: skip
def test_what_running_out_of_memory_looks_like(exc: BaseException) -> None:
    assert out_of_memory(exc)


@pytest.mark.parametrize(
    "exc",
    [
        ImportError("No module named 'torch'"),
        ImportError("libgomp.so.1: cannot allocate memory in static TLS block"),  # LD_PRELOAD, not memory
        OSError(errno.ENOSPC, "No space left on device"),
        ModelLoadError("model 'x' cannot run on ONNX Runtime (speech 'hubert'); use engine 'torch'"),
        RuntimeError("Error(s) in loading state_dict"),
    ],
)
def test_other_load_failures_are_not_memory(exc: BaseException) -> None:
    assert not out_of_memory(exc)


def test_the_message_names_the_model_the_library_s_words_and_the_remedy() -> None:
    ct2 = _wrapped(
        RuntimeError("mkl_malloc: failed to allocate memory"),
        ModelLoadError(
            "CTranslate2 could not load /m: mkl_malloc: failed to allocate memory; try device='cpu'"
        ),
    )
    message = no_memory_message("clasp-mini-v1.1", ct2)
    assert message.startswith(
        "not enough memory to load model 'clasp-mini-v1.1' "
        "(RuntimeError: mkl_malloc: failed to allocate memory); "
    )
    assert "float32" not in message  # the wrapper's remedy for other failures
    torch = ImportError("libtorch_cuda.so: failed to map segment from shared object")
    assert "GPU" not in no_memory_message("m", torch)  # the library's name, not a GPU out of memory
    gpu = RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB")
    assert no_memory_message("m", gpu).endswith(
        "free GPU memory (other processes), or run it on the CPU (--device cpu)"
    )


def test_a_segment_that_cannot_be_mapped_is_memory_only_under_an_address_space_limit() -> None:
    """The loader says the same of a library on a noexec mount (reviewer 3: a venv under a
    noexec /tmp was "not enough memory")."""
    import resource

    exc = ImportError("libtorch_cpu.so: failed to map segment from shared object")
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        pytest.skip("an address-space limit is set that this process cannot lift")
    try:
        resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, hard))
        assert not out_of_memory(exc)
        resource.setrlimit(resource.RLIMIT_AS, (2**50, hard))
        assert out_of_memory(exc)
        assert "ulimit -v, now" in no_memory_message("m", exc)
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def test_an_error_raised_from_none_is_not_judged_by_the_one_it_hid() -> None:
    try:
        try:
            raise MemoryError
        except MemoryError:
            raise ModelLoadError("the model folder holds no config.json") from None
    except ModelLoadError as exc:
        assert not out_of_memory(exc)
