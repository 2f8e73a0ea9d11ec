"""The ``clasp-ingest`` command line. It owns output: progress bars, tables, ``--json``.

Each capability keeps its commands next to its code in a ``cli_*`` module with a
``register(app)`` function; this module only assembles them and turns failures into one
``error: ...`` line (the traceback only with ``-vv``) and a documented exit status.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import signal
import stat
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import typer
from typer.core import TyperGroup

from clasp_ingest import __version__
from clasp_ingest.errors import ClaspIngestError, StoreBusyError
from clasp_ingest.exitcodes import (
    EXIT_BROKEN_PIPE,
    EXIT_BUSY,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USAGE,
)

__all__ = ["app", "main"]

_EPILOG = (
    "Exit status: 0 done; 1 error (one 'error: ...' line names the cause and the fix; -vv adds the "
    "traceback); 2 bad usage; 3 ingest ran but some items failed (listed); 75 the embedded store is "
    "open in another process (try again later); 130 interrupted (Ctrl-C); "
    "141 the output's reader went away; 143 terminated (SIGTERM)."
)

_verbosity = 0


def _report(message: str) -> None:
    if _verbosity >= 2 and sys.stderr is not None:  # closed (2>&-): it would go to stdout
        traceback.print_exc()
    typer.echo(f"error: {message}", err=True)


def _describe(exc: BaseException) -> str:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError) and exc.title == "Settings":  # a CLASP_* variable
        from clasp_ingest.config import settings_problems

        return settings_problems(exc)
    if isinstance(exc, ClaspIngestError | ImportError):
        return str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        if exc.filename:
            return f"{exc.strerror}: {exc.filename!r}"
        if _output_unwritable(exc):  # >&-, 1</dev/null: "Bad file descriptor"
            return _NO_OUTPUT
        if _output_full(exc):  # > /dev/full, a file on a full disk: "No space left on device:"
            return f"cannot write the output ({exc.strerror}); free some space, or write it elsewhere"
        return exc.strerror
    detail = str(exc).strip().splitlines()
    first = detail[0] if detail else ""
    return (
        f"unexpected {type(exc).__name__}: {first} (please report it with the output of the same "
        "command run with -vv before the command's name: clasp-ingest -vv COMMAND ...)"
    )


#: What a write to a full disk (or quota, or file size limit) fails with.
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _output_full(exc: OSError) -> bool:
    """Whether ``exc`` (an error without a file name) is stdout having no room: ``/dev/full``
    refuses even an empty write, and a file's disk has no free block left. An export or a
    download into a full disk fails with the same error, and is not called the output."""
    if exc.errno not in _NO_ROOM:
        return False
    try:
        fd = sys.stdout.fileno()
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # a pipe or terminal has no disk (0 blocks)
            os.write(fd, b"")  # /dev/full refuses even this
            return False
        disk = os.fstatvfs(fd)
    except OSError as again:
        return again.errno in _NO_ROOM
    except (AttributeError, ValueError):  # no stdout (closed), or no descriptor (a test's buffer)
        return False
    return disk.f_bavail == 0 or disk.f_bfree == 0


#: The error of a command whose standard output cannot be written at all.
_NO_OUTPUT = (
    "cannot write the output: standard output is closed (>&-) or open only for reading; send it "
    "to a file, a pipe or /dev/null"
)


def _output_unwritable(exc: OSError) -> bool:
    """Whether ``exc`` is stdout refusing writes: closed (:func:`_closed_stdout_refuses`) or open
    only for reading refuses even an empty write."""
    if exc.errno != errno.EBADF:
        return False
    try:
        os.write(sys.stdout.fileno(), b"")
    except OSError as again:  # a test's buffer has no descriptor (io.UnsupportedOperation)
        return again.errno == errno.EBADF
    except (AttributeError, ValueError):  # no stdout, or a closed stream object
        return False
    return False


def _closed_stdout_refuses() -> None:
    """A closed stdout (``>&-``; Python makes ``sys.stdout`` None) fails the first write, as one
    open only for reading does: every command dropped its output and exited 0. Descriptor 1
    gets the null device, opened for reading, so no file opened later takes its number either,
    and inherited: the processes it starts (``--flow``'s Prefect server) had descriptor 1 closed
    again (``os.open`` makes none inheritable), and that server failed to start."""
    if sys.stdout is not None:
        return
    try:
        os.fstat(1)
    except OSError:
        null = os.open(os.devnull, os.O_RDONLY)
        if null != 1:
            os.dup2(null, 1)  # (inheritable)
            os.close(null)
        else:
            os.set_inheritable(1, True)
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 - the process's stdout until it ends


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread: a ``KeyboardInterrupt``, so the work unwinds as it
    does on Ctrl-C (temporary downloads deleted, a half-written item rolled back); exit 143."""


def _terminate(signum: int, frame: FrameType | None) -> NoReturn:
    raise _Terminated


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`_Terminated` (in the main thread; elsewhere nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


#: The width of ``--help`` written to a pipe or file (``| less``, ``> help.txt``): rich takes 80
#: columns there, and cut 13 of ``ingest``'s option and variable names (``--allow-private-ho…``).
_HELP_WIDTH_OFF_TERMINAL = 120


def _help_width_off_terminal() -> None:
    """``--help`` into a pipe or file is as wide as its longest names need, unless the user set
    a width (``COLUMNS``, ``TERMINAL_WIDTH``); a terminal keeps its own width."""
    from typer import rich_utils

    from clasp_ingest.store.cli_store import is_terminal

    if os.environ.get("COLUMNS") or os.environ.get("TERMINAL_WIDTH") or rich_utils.MAX_WIDTH is not None:
        return
    if not is_terminal(sys.stdout):
        rich_utils.MAX_WIDTH = _HELP_WIDTH_OFF_TERMINAL


def _tolerant_output() -> None:
    """Text the output's encoding cannot hold (a latin-1 or ASCII terminal, ``PYTHONIOENCODING``)
    is written as ``\\u2013`` escapes instead of failing the command."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(ValueError, OSError):  # a closed or detached stream
                reconfigure(errors="backslashreplace")


def _stdout_gone() -> bool:
    """Whether stdout is a pipe whose reader went away (poll reports an error on its end)."""
    try:
        return _reader_gone(sys.stdout.fileno())
    except (OSError, ValueError):  # no file descriptor (a test runner's buffer): as before
        return True
    except AttributeError:  # stdout closed (>&-): no pipe to have broken
        return False


def _stderr_gone() -> bool:
    """Whether stderr is a pipe whose reader went away."""
    try:
        return _reader_gone(2)
    except (OSError, ValueError):
        return False


def _reader_gone(fd: int) -> bool:
    """Whether ``fd`` is a pipe whose reader went away (poll reports an error on its end)."""
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


def _silence_stdout() -> None:
    """Point stdout at /dev/null: what is left in its buffer is dropped at exit, not reported
    as one more broken pipe."""
    with contextlib.suppress(AttributeError, OSError, ValueError):  # closed, or no descriptor
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _pipe_closed(exc: SystemExit) -> bool:
    """Whether ``exc`` is a library's own exit on a reader that went away: rich's
    ``Console.on_broken_pipe`` (a table, ``--help``) and click's handling of EPIPE both
    ``SystemExit(1)`` while handling the ``BrokenPipeError``; every command exits 141 then. Not
    where stderr's reader is gone: the pipe that broke may be the ``error:`` line's, and a
    failure keeps its status (stdout cannot be asked: rich points it at /dev/null first)."""
    return exc.code == EXIT_ERROR and isinstance(exc.__context__, BrokenPipeError) and not _stderr_gone()


def _cwd_gone() -> bool:
    """Whether the current folder was deleted (``os.getcwd()`` fails): a relative path could
    not be found, and CTranslate2's import dies with "Intel oneMKL FATAL ERROR" (exit 2) after
    ``ingest`` created its collection."""
    try:
        Path.cwd()
    except FileNotFoundError:
        return True
    return False


def _needs_cwd(ctx: Any) -> bool:
    """Whether the command may load a model (CTranslate2's import dies without a current
    folder) or read a relative path: not ``store``/``models`` commands, nor a ``--help``."""
    # the command's name and arguments, as click's Group.invoke reads them (its name for the
    # first part changed across click releases)
    first = getattr(ctx, "_protected_args", None) or getattr(ctx, "protected_args", None) or []
    args = [*first, *ctx.args]
    return bool(args) and args[0] not in ("store", "models") and "--help" not in args and "-h" not in args


class _Group(TyperGroup):
    """The root command group: every failure becomes one ``error:`` line and an exit status."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        _closed_stdout_refuses()
        _tolerant_output()
        _help_width_off_terminal()
        with _sigterm_unwinds():
            try:
                return super().main(*args, **kwargs)
            except SystemExit as exc:
                if _pipe_closed(exc):
                    raise SystemExit(EXIT_BROKEN_PIPE) from None
                raise
            except OSError as exc:  # --help, --version: written before a command runs
                if not (_output_unwritable(exc) or _output_full(exc)):
                    raise
                _report(_describe(exc))
                _silence_stdout()  # what is left in its buffer is dropped at exit
                raise SystemExit(EXIT_ERROR) from None

    def invoke(self, ctx: Any) -> Any:
        if _cwd_gone() and _needs_cwd(ctx):  # before any work: no collection is made, no model loads
            typer.echo(
                "error: the current folder no longer exists (deleted or moved away); cd to another "
                "folder and run the command again",
                err=True,
            )
            raise typer.Exit(EXIT_USAGE)
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except _Terminated:
            _report("terminated")
            raise typer.Exit(EXIT_TERMINATED) from None
        except KeyboardInterrupt:
            _report("interrupted")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except BrokenPipeError as exc:
            if not _stdout_gone():  # another pipe or socket broke (a server, a child): an error
                _report(_describe(exc))
                raise typer.Exit(EXIT_ERROR) from None
            # the reader went away (| head): nothing left to say to it
            _silence_stdout()
            raise typer.Exit(EXIT_BROKEN_PIPE) from None
        except Exception as exc:
            _report(_describe(exc))
            if isinstance(exc, OSError) and _output_unwritable(exc):
                _silence_stdout()
            raise typer.Exit(EXIT_BUSY if isinstance(exc, StoreBusyError) else EXIT_ERROR) from None


app = typer.Typer(
    name="clasp-ingest",
    cls=_Group,
    help="Ingest spoken media into Qdrant with CLASP embeddings and search it by text in ~100 languages.",
    epilog=_EPILOG,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"clasp-ingest {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
    verbose: int = typer.Option(
        0,
        "--verbose",
        "-v",
        count=True,
        help="More log output: -v info, -vv debug and tracebacks (a flag: repeat it, before the command).",
    ),
) -> None:
    global _verbosity
    _verbosity = verbose
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler:  # the console's (not a test's capture)
            handler.setFormatter(
                _OneLineFormatter(
                    "%(levelname)s %(name)s: %(message)s", tracebacks=verbose >= 2, named=verbose >= 1
                )
            )


class _OneLineFormatter(logging.Formatter):
    """Log lines whose message (a file name with a newline or a terminal escape in it) is
    written with escapes (:func:`clasp_ingest.log.one_line`); a record's traceback only with
    ``-vv`` (``tracebacks``), where it keeps its lines. Prefect logs a task's last failed try
    with its traceback: ``ingest --flow`` printed 40 lines for one unreachable item. Without
    ``-v`` (``named`` False) this package's warnings are ``warning: ...`` lines, as the commands
    print their own (a glob matching nothing said ``WARNING clasp_ingest.pipeline: ...``)."""

    def __init__(self, fmt: str, tracebacks: bool = False, named: bool = True) -> None:
        super().__init__(fmt)
        self._tracebacks = tracebacks
        self._named = named

    def format(self, record: logging.LogRecord) -> str:
        if not self._tracebacks and (record.exc_info or record.exc_text or record.stack_info):
            record = logging.makeLogRecord(
                {**record.__dict__, "exc_info": None, "exc_text": None, "stack_info": None}
            )
        return super().format(record)

    def formatMessage(self, record: logging.LogRecord) -> str:
        from clasp_ingest.log import one_line

        ours = record.name == "clasp_ingest" or record.name.startswith("clasp_ingest.")
        if not self._named and ours and record.levelno == logging.WARNING:
            return f"warning: {one_line(record.getMessage())}"
        return one_line(super().formatMessage(record))


def _registrars() -> list[Callable[[typer.Typer], None]]:
    # Each capability adds its ``register`` here (imports stay local: ``--help`` is fast).
    registrars: list[Callable[[typer.Typer], None]] = []
    from clasp_ingest.model.cli_models import register as register_models

    registrars.append(register_models)
    from clasp_ingest.media.cli_media import register as register_media

    registrars.append(register_media)
    from clasp_ingest.training.cli_train import register as register_training

    registrars.append(register_training)
    from clasp_ingest.cli_ingest import register as register_ingest

    registrars.append(register_ingest)
    from clasp_ingest.retriever.cli_search import register as register_search
    from clasp_ingest.store.cli_store import register as register_store

    registrars += [register_store, register_search]
    return registrars


for _register in _registrars():
    _register(app)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except SystemExit as exc:
        if exc.code in (EXIT_INTERRUPTED, EXIT_TERMINATED):
            _exit_at_once(exc.code)
        raise


def _exit_at_once(status: int) -> NoReturn:
    """Leave without the interpreter's teardown: after Ctrl-C or SIGTERM the work is already
    unwound (temp files gone, store closed), and the C++ destructors of torch/ONNX Runtime take
    1-2 s more."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)
