"""Per-agent command queues: a safe, unique, stable SQS FIFO queue name per username.

SQS queue names allow ``[A-Za-z0-9_-]``, at most 80 characters, and FIFO names end in
``.fifo``. Connect usernames may hold ``.``, ``@``, ``'``, spaces and non-ASCII letters, and
may differ only by case or by a character that the sanitising step drops; so the name is a
readable sanitised prefix plus a hash of the exact username, which keeps names unique.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

MAX_QUEUE_NAME = 80
FIFO_SUFFIX = ".fifo"
HASH_CHARS = 12

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def agent_queue_name(username: str, prefix: str = "qm-agent") -> str:
    """``qm-agent-<readable>-<hash>.fifo`` for ``username`` (deterministic)."""
    if not username:
        raise ValueError("empty username")
    digest = hashlib.sha256(username.encode("utf-8")).hexdigest()[:HASH_CHARS]
    ascii_form = unicodedata.normalize("NFKD", username).encode("ascii", "ignore").decode()
    readable = _UNSAFE.sub("_", ascii_form).strip("_") or "user"
    room = MAX_QUEUE_NAME - len(FIFO_SUFFIX) - len(prefix) - len(digest) - 2
    return f"{prefix}-{readable[:room]}-{digest}{FIFO_SUFFIX}"
