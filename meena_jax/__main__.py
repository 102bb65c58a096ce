"""``python -m meena_jax <command> [flags]``: the one command-line entry (``commands.py``)."""
from meena_jax import commands

commands.main()
