"""Logging hygiene: access tokens never reach the logs.

Browsers can only pass a WebSocket token in the URL, and uvicorn logs WebSocket URLs with their
query string ("WebSocket /ws/match/1/?token=eyJ..." [accepted]) even with the access log off.
"""

from __future__ import annotations

import logging
import re

TOKEN_IN_URL = re.compile(r"(token=)[^&\s\"']+")
LOGGERS = ("uvicorn.error", "uvicorn.access")


class RedactTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if "token=" in record.getMessage():
            record.msg = TOKEN_IN_URL.sub(r"\1***", record.getMessage())
            record.args = None
        return True


def redact_tokens() -> None:
    """Install the filter on uvicorn's loggers (once per process)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
