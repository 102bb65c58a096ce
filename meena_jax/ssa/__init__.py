"""SSA human evaluation (Meena's Sensibleness and Specificity Average): import, rate, report.

  python -m meena_jax ssa import --db ratings.sqlite responses.jsonl meena.txt
  python -m meena_jax ssa serve --db ratings.sqlite --port 8000
  python -m meena_jax ssa report --db ratings.sqlite --csv ssa.csv

One module per job: ``importers`` (JSONL and Meena's transcript format to items), ``store``
(the SQLite database: raters, items, assignments and labels, conversations), ``web`` (the Flask
application raters and the admin use), ``pages`` (its templates), ``interactive`` (live models
behind a JSON-lines pipe), ``report`` (majority labels, SSA, bootstrap intervals, agreement,
CSV and the SSA-perplexity plot) and ``__main__`` (the command line).

The stack is small on purpose: the standard library's sqlite3, Flask and waitress for the web
(see ``web``), numpy, krippendorff and matplotlib for the statistics (see ``report``). None of
it imports JAX, so the server starts in a second on a machine without the model.
"""
