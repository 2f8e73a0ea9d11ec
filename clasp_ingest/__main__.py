from __future__ import annotations

from clasp_ingest.cli import main

main()
