"""`python -m bench` (or `./dev bench`): run every benchmark and print one table.

`--markdown` prints the table as Markdown, the form kept in the README's performance section;
`--update-readme README.md` also writes it there, between the lines ``<!-- bench:start -->`` and
``<!-- bench:end -->``; with `--only`, modules that name their rows (`ROW_PREFIXES`) replace just those rows.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path

from bench.readme import END, START, replace_table, splice_rows, table_of, update_readme
from bench.table import Row, markdown, text

BENCHES = ["bench.outbox", "bench.modbus", "bench.mqtt", "bench.fleet", "bench.telemetry", "bench.detection",
           "bench.quiet", "bench.replay", "bench.backtest"]


def main() -> int:
    p = argparse.ArgumentParser(prog="bench", description=__doc__)
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    p.add_argument("--only", nargs="*", help="run only these benchmark modules (e.g. bench.outbox)")
    p.add_argument("--update-readme", type=Path, metavar="FILE",
                   help=f"replace the table between {START} and {END} in FILE (e.g. README.md)")
    args = p.parse_args()
    modules = [importlib.import_module(name) for name in args.only or ()]
    if args.update_readme is not None:  # before minutes of benchmarks: the file must have its markers
        try:
            replace_table(args.update_readme.read_text(encoding="utf-8"), "")
        except (OSError, ValueError) as exc:
            p.error(f"--update-readme {args.update_readme}: {exc}")
        unnamed = [m.__name__ for m in modules if not hasattr(m, "ROW_PREFIXES")]
        if unnamed:  # its rows could not be told from the others': the whole table would be replaced by them
            p.error(f"--update-readme with --only: {', '.join(unnamed)} names no ROW_PREFIXES; run every "
                    f"benchmark to rewrite the whole table")
    logging.basicConfig(level=logging.ERROR)
    for noisy in ("apscheduler", "pymodbus", "collector", "gshp", "rules"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    rows: list[Row] = []
    for name in args.only or BENCHES:
        print(f"running {name} …", file=sys.stderr, flush=True)
        rows += importlib.import_module(name).run()
    print(markdown(rows) if args.markdown else text(rows))
    if args.update_readme is not None:
        table = markdown(rows)
        if modules:  # keep the other benchmarks' rows (every module names its own: checked above)
            prefixes = tuple(p for m in modules for p in m.ROW_PREFIXES)
            table = splice_rows(table_of(args.update_readme.read_text(encoding="utf-8")), table, prefixes)
        changed = update_readme(args.update_readme, table)
        print(f"{args.update_readme}: {'table updated' if changed else 'table unchanged'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
