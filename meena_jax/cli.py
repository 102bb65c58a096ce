"""The command-line edge: ``--gin_file``/``--gin.KEY=VALUE`` flags in, configured objects out.

Only command-line modules import this (and gin). Library code takes plain arguments, so tests
call it without gin. Flags follow T5X:

  python -m meena_jax.summary --gin_file=gin/models/et_tiny.gin --gin.ModelConfig.d_model=128

A ``--gin.KEY=VALUE`` whose value is not a gin literal (``/tmp/run``) is taken as a string, so
paths need no extra quotes. Gin files are looked up relative to the working directory, then the
repository root, then any ``--gin_search_path``.
"""
import argparse
import ast
import pathlib
from typing import Sequence

import gin

from meena_jax import config

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent

# The gin name of every configurable is its class name: bindings read `ModelConfig.d_model`.
ModelConfig = gin.external_configurable(config.ModelConfig, name="ModelConfig")


def _binding(text: str) -> str:
  """``KEY=VALUE`` -> a gin binding, quoting VALUE when it is not a valid gin value."""
  key, sep, value = text.partition("=")
  if not sep or not key:
    raise SystemExit(f"--gin.{text}: expected --gin.KEY=VALUE")
  if value.strip().startswith(("@", "%")):  # A gin reference or macro.
    return f"{key} = {value}"
  try:
    ast.literal_eval(value)
    return f"{key} = {value}"
  except (ValueError, SyntaxError):
    return f"{key} = {value!r}"


def parse_args(argv: Sequence[str], description: str, parser: argparse.ArgumentParser = None):
  """Parses ``--gin_file``, ``--gin_search_path`` and ``--gin.KEY=VALUE`` and applies them.

  Returns the argparse namespace of the remaining (command-specific) flags, which ``parser``
  declares. Unknown flags stop the program with their name.
  """
  parser = parser or argparse.ArgumentParser(description=description)
  parser.add_argument("--gin_file", action="append", default=[],
                      help="gin file to parse (repeatable, applied in order)")
  parser.add_argument("--gin_search_path", action="append", default=[],
                      help="extra directory to resolve gin files and includes against")
  gin_bindings = [a[len("--gin."):] for a in argv if a.startswith("--gin.")]
  args = parser.parse_args([a for a in argv if not a.startswith("--gin.")])
  for path in [pathlib.Path.cwd(), REPO_ROOT, *map(pathlib.Path, args.gin_search_path)]:
    gin.add_config_file_search_path(str(path))
  for gin_file in args.gin_file:
    if not any((root / gin_file).is_file() for root in
               [pathlib.Path(), REPO_ROOT, *map(pathlib.Path, args.gin_search_path)]):
      raise SystemExit(f"--gin_file={gin_file}: no such file (looked in {pathlib.Path.cwd()}, "
                       f"{REPO_ROOT} and the --gin_search_path directories)")
  gin.parse_config_files_and_bindings(args.gin_file, [_binding(b) for b in gin_bindings])
  return args


def model_config() -> config.ModelConfig:
  """The ``ModelConfig`` the parsed gin files describe (their errors name the binding)."""
  return ModelConfig()
