"""An unexpected error's line says how to get its traceback in a form that works when typed as
written: ``-vv`` goes before the command's name (tester 3: ``clasp-ingest ingest ... -vv``
was refused with "No such option: -v")."""

from __future__ import annotations

from clasp_ingest.cli import _describe


def test_the_report_hint_puts_vv_before_the_command() -> None:
    line = _describe(RuntimeError("boom"))
    assert line.startswith("unexpected RuntimeError: boom")
    assert "clasp-ingest -vv COMMAND" in line
