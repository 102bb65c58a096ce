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


def _module_level_imports(path, package_dirs: dict) -> set:
  """The project modules ``path`` imports when it is imported: top-level import statements
  (and those inside top-level ``try``/``if`` blocks other than ``if __name__ == ...``), not
  the deferred ones inside functions."""
  import ast  # pylint: disable=import-outside-toplevel
  names = set()

  def visit(statements):
    for node in statements:
      if isinstance(node, ast.Import):
        names.update(alias.name for alias in node.names)
      elif isinstance(node, ast.ImportFrom) and node.module:
        names.update(f"{node.module}.{alias.name}" for alias in node.names)
        names.add(node.module)
      elif isinstance(node, ast.If) and "__name__" not in ast.unparse(node.test):
        visit(node.body + node.orelse)
      elif isinstance(node, ast.Try):
        visit(node.body + node.orelse + node.finalbody)

  visit(ast.parse(path.read_text()).body)
  return {name for name in names if _module_path(name, package_dirs) is not None}


def _module_path(name: str, package_dirs: dict):
  package, _, rest = name.partition(".")
  if package not in package_dirs:
    return None
  base = package_dirs[package].joinpath(*rest.split(".")) if rest else package_dirs[package]
  for candidate in (base.with_suffix(".py"), base / "__init__.py"):
    if candidate.is_file():
      return candidate
  return None


def test_the_import_graph_has_no_cycle():
  import pathlib  # pylint: disable=import-outside-toplevel
  root = pathlib.Path(cli.REPO_ROOT)
  package_dirs = {"meena_jax": root / "meena_jax", "meena_tasks": root / "tasks"}
  graph = {}
  for package, directory in package_dirs.items():
    for path in directory.rglob("*.py"):
      parts = path.relative_to(directory).with_suffix("").parts
      parts = parts[:-1] if parts[-1] == "__init__" else parts
      graph[".".join((package, *parts))] = _module_level_imports(path, package_dirs)
  assert len(graph) > 60 and "meena_jax.checkpoints" in graph["meena_jax.loop"]
  state, stack = {}, []

  def visit(module):  # Depth-first; a module met again while on the stack closes a cycle.
    state[module] = "open"
    stack.append(module)
    for target in sorted(graph.get(module, ())):
      if state.get(target) == "open":
        raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(target):]
                                                             + [target]))
      if target not in state:
        visit(target)
    stack.pop()
    state[module] = "done"

  for module in sorted(graph):
    if module not in state:
      visit(module)


def test_eval_and_chat_read_the_train_state_at_the_named_subtree():
  import gin  # pylint: disable=import-outside-toplevel
  cli.register_training()
  cli.register_decoding()
  files = ["--gin_file=gin/runs/et_tiny_chitchat.gin", "--gin_file=gin/decoding/chat.gin",
           "--gin.CHECKPOINT=/runs/ppo"]
  try:
    cli.parse_args(files, "test")
    assert cli._value("load_responder.checkpoint_subtree") == ""  # pylint: disable=protected-access
    gin.clear_config()
    cli.parse_args([*files, "--gin.CHECKPOINT_SUBTREE=policy"], "test")
    for binding in ("load_responder.checkpoint_subtree",
                    "evaluate_checkpoint.checkpoint_subtree"):
      assert cli._value(binding) == "policy", binding  # pylint: disable=protected-access
  finally:
    gin.clear_config()
