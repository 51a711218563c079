"""`python -m bench` (or `./dev bench`): run every benchmark and print one table.

`--markdown` prints the table as Markdown, the form kept in the README's performance section.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from bench.table import Row, markdown, text

BENCHES = ["bench.outbox", "bench.modbus", "bench.mqtt", "bench.detection"]


def main() -> int:
    p = argparse.ArgumentParser(prog="bench", description=__doc__)
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    p.add_argument("--only", nargs="*", help="run only these benchmark modules (e.g. bench.outbox)")
    args = p.parse_args()
    logging.basicConfig(level=logging.ERROR)
    for noisy in ("apscheduler", "pymodbus", "collector", "gshp", "rules"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    rows: list[Row] = []
    for name in args.only or BENCHES:
        print(f"running {name} …", file=sys.stderr, flush=True)
        rows += importlib.import_module(name).run()
    print(markdown(rows) if args.markdown else text(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
