"""The command line's log lines: one line per record, a traceback only with ``-vv``."""

from __future__ import annotations

import logging
import sys

from clasp_ingest.cli import _OneLineFormatter


def _record() -> logging.LogRecord:
    try:
        raise RuntimeError("cannot be reached")
    except RuntimeError:
        info = sys.exc_info()
    return logging.LogRecord(
        "prefect.task_runs", logging.ERROR, __file__, 1, "Task run failed: %s", ("x",), info
    )


def test_a_record_with_a_traceback_is_one_line_unless_tracebacks_are_asked_for() -> None:
    fmt = "%(levelname)s %(name)s: %(message)s"
    record = _record()
    plain = _OneLineFormatter(fmt, tracebacks=False).format(record)
    assert plain == "ERROR prefect.task_runs: Task run failed: x"
    assert record.exc_info is not None  # the record itself is left as it was (other handlers)
    full = _OneLineFormatter(fmt, tracebacks=True).format(_record())
    assert (
        full.startswith("ERROR prefect.task_runs: Task run failed: x\nTraceback") and "RuntimeError" in full
    )


def test_one_line_escapes_controls_separators_and_bidi_overrides_but_keeps_scripts() -> None:
    from clasp_ingest.log import one_line

    assert one_line("a\nb\x1b[2J\u2028c") == "a\\nb\\x1b[2J\\u2028c"
    # a feed title's right-to-left override turned the rest of the line around on the terminal
    assert one_line("talk\u202e3pm.exe \u2066x\u2069") == "talk\\u202e3pm.exe \\u2066x\\u2069"
    kept = "café नमस्ते 👩\u200d💻 مرحبا"  # joiners and every script stay as they are
    assert one_line(kept) == kept


def test_a_ctrl_c_while_the_cli_imports_is_one_line_not_a_traceback() -> None:
    """The first half second of ``clasp-ingest`` is imports; a Ctrl-C there printed their traceback."""
    import subprocess

    interrupted = (
        "import builtins\n"
        "real = builtins.__import__\n"
        "def importing(name, *args, **kwargs):\n"
        "    if name == 'clasp_ingest.cli':\n"
        "        raise KeyboardInterrupt\n"
        "    return real(name, *args, **kwargs)\n"
        "builtins.__import__ = importing\n"
        "from clasp_ingest.console import main\n"
        "main()\n"
    )
    run = subprocess.run([sys.executable, "-c", interrupted], capture_output=True, text=True, timeout=60)
    assert (run.returncode, run.stderr) == (130, "error: interrupted\n")
    # and the package imports without numpy or pydantic, so the entry point's guard starts at once
    light = "import sys, clasp_ingest; print(sorted({'numpy', 'pydantic'} & set(sys.modules)))"
    names = subprocess.run([sys.executable, "-c", light], capture_output=True, text=True, timeout=60)
    assert names.stdout.strip() == "[]", names.stdout + names.stderr
