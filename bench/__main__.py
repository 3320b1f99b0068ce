"""``make bench``: every benchmark prints its figures next to a baseline measured in the same run.

Run one with ``python -m bench NAME`` (names: the modules in this folder); ``--quick`` (or
``BENCH_QUICK=1``) asks the benchmarks that support it for a short run.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
from pathlib import Path


def main() -> None:
    from processor.platform.logs import configure_logging

    configure_logging("WARNING")  # figures only; the service's own logs are not the point here
    here = Path(__file__).parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    args = sys.argv[1:]
    if "--quick" in args:  # a short run of each benchmark that supports it (also BENCH_QUICK=1)
        os.environ["BENCH_QUICK"] = "1"
        args.remove("--quick")
    wanted = args or names
    for name in wanted:
        module = importlib.import_module(f"bench.{name if name.startswith('bench_') else 'bench_' + name}")
        print(f"\n== {module.__name__}: {(module.__doc__ or '').strip().splitlines()[0]}")
        module.run()


if __name__ == "__main__":
    main()
