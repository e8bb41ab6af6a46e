"""``python -m bench.report RUNS... --out DIR``: the tables and figures of results folders (``aggregate``)."""

from bench.report.aggregate import main

main()
