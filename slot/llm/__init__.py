"""The LLM tier: BAML functions (baml_src/), their generated client and routes.

Importing this package turns BAML's own logging off unless `BAML_LOG` is set: BAML logs full
prompts and replies at its default level (INFO), and those carry caller transcripts.
"""

from __future__ import annotations

import os

if "BAML_LOG" not in os.environ:
    os.environ["BAML_LOG"] = "off"
    from baml_py.logging import set_log_level

    set_log_level("OFF")
