"""The command-line edge: one entry dispatches every command, the old module forms still run,
and no library module pulls the gin edge in when imported."""
import subprocess
import sys

import pytest

from meena_jax import cli, commands

LIBRARY = ["meena_jax.train", "meena_jax.eval", "meena_jax.chat", "meena_jax.summary",
           "meena_jax.compile", "meena_jax.data_stats", "meena_jax.decoding",
           "meena_jax.posttrain.commands", "meena_jax.posttrain.ppo", "meena_tasks.seqio_tasks"]


def test_library_modules_import_neither_the_edge_nor_gin():
  code = ("import sys\n"
          f"for name in {LIBRARY!r}: __import__(name)\n"
          "print(sorted(m for m in ('meena_jax.cli', 'meena_jax.commands', 'gin') "
          "if m in sys.modules))")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=cli.REPO_ROOT)
  assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("argv", [
    ["-m", "meena_jax", "summary"],
    ["-m", "meena_jax.summary"],  # The old form: an alias of the edge.
])
def test_both_forms_run_a_command(argv):
  result = subprocess.run([sys.executable, *argv, "--gin_file=gin/models/et_tiny.gin"],
                          capture_output=True, text=True, cwd=cli.REPO_ROOT)
  assert result.returncode == 0, result.stderr
  assert "total" in result.stdout.lower()


def test_an_unknown_command_is_one_line_that_lists_the_commands():
  with pytest.raises(SystemExit, match=r"^unknown command 'trian'; usage: python -m meena_jax "
                                       r"\{train,eval,chat,summary,compile,"):
    commands.main(["trian"])
  with pytest.raises(SystemExit, match="usage: python -m meena_jax"):
    commands.main([])


def test_every_command_answers_help(capsys):
  for name in commands.COMMANDS:
    try:
      commands.main([name, "--help"])
    except SystemExit as exit_:
      assert exit_.code in (0, None), name
    assert capsys.readouterr().out.strip(), name


def test_a_command_missing_its_extra_names_the_extra(monkeypatch):
  for name in [m for m in sys.modules if m.startswith("meena_jax.posttrain")]:
    monkeypatch.delitem(sys.modules, name)
  monkeypatch.setitem(sys.modules, "rlax", None)  # As if meena_jax[posttrain] were not installed.
  with pytest.raises(SystemExit, match=r"^error: posttrain needs rlax, which is not installed: "
                                       r"pip install 'meena_jax\[posttrain\]'"):
    commands.main(["posttrain", "rm_eval", "--gin_file=gin/posttrain/rm_et_tiny_hh.gin"])
