from __future__ import annotations

from clasp_ingest.console import main

main()
