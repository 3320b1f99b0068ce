"""The container's HEALTHCHECK: ``python -m processor.entrypoints.probe [healthz|readyz]``.

Standard library only (no curl in the image, and a quick start every probe): asks
``http://127.0.0.1:$QM_HEALTH_PORT/<path>`` and exits 0 on HTTP 200, 1 otherwise.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

DEFAULT_PORT = 8080


def probe(path: str = "healthz", port: int | None = None, timeout: float = 3.0) -> bool:
    port = port if port is not None else int(os.environ.get("QM_HEALTH_PORT") or DEFAULT_PORT)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/{path}", timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = args[0] if args else "healthz"
    if path not in ("healthz", "readyz"):
        print(f"usage: python -m processor.entrypoints.probe [healthz|readyz], not {path!r}", file=sys.stderr)  # noqa: T201
        return 2
    return 0 if probe(path) else 1


if __name__ == "__main__":
    sys.exit(main())
