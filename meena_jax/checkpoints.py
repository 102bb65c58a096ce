"""Orbax checkpoints: the trainer's manager, resuming past a corrupt step, and loading just the
parameters of a run for evaluation and chat.

A run directory (``MODEL_DIR``) holds ``checkpoints/<step>/`` with two items: ``state`` (the
``TrainState``) and ``data`` (the input position). Everything that reads a checkpoint goes
through this module, so the layout is written down once.
"""
import logging
import pathlib
from typing import Optional

import jax
import orbax.checkpoint as ocp

from meena_jax import state as state_lib

log = logging.getLogger("meena_jax.checkpoints")


class CheckpointMismatchError(ValueError):
  """A checkpoint's parameters are not the configured model's; the message names the first
  parameter that differs and how."""


def checkpoint_manager(model_dir, keep: int = 3) -> ocp.CheckpointManager:
  """Named items per step: ``state`` (the TrainState) and ``data`` (the input position)."""
  return ocp.CheckpointManager(
      pathlib.Path(model_dir).expanduser().resolve() / "checkpoints",
      options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
      item_names=("state", "data"))


def restore_latest(manager: ocp.CheckpointManager, abstract_state):
  """(state, data item) of the newest readable checkpoint, or None; a corrupt or half-written
  checkpoint is reported and the one before it is used."""
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      restored = manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
      return restored["state"], restored["data"]
    except Exception as error:  # pylint: disable=broad-except  # Orbax raises many kinds.
      log.warning("checkpoint at step %d is unreadable (%s: %s); trying the one before",
                  step, type(error).__name__, error)
  return None


def find_state_dir(path) -> pathlib.Path:
  """``MODEL_DIR``, ``MODEL_DIR/checkpoints`` or ``MODEL_DIR/checkpoints/<step>`` -> the
  ``state`` item directory of that step (the newest complete one for a run directory), as an
  absolute path: orbax's tensorstore reader refuses relative ones (and its ``metadata`` call
  then reports no tree at all)."""
  path = pathlib.Path(path).expanduser().resolve()
  if (path / "state").is_dir():
    return path / "state"
  if path.name == "state" and path.is_dir():
    return path
  root = path / "checkpoints" if (path / "checkpoints").is_dir() else path
  if not root.is_dir():
    raise FileNotFoundError(f"checkpoint {path}: no such directory")
  steps = sorted((int(p.name) for p in root.iterdir() if p.name.isdigit()
                  and (p / "state").is_dir()), reverse=True)
  if not steps:
    raise FileNotFoundError(f"checkpoint {path}: no checkpoints/<step>/state directory in it")
  return root / str(steps[0]) / "state"


def check_matches(stored: dict, expected: dict, where: str):
  """Raises ``CheckpointMismatchError`` naming the first parameter missing, extra, or of
  another shape between a checkpoint's ``params`` metadata and the model's."""
  stored_leaves = {jax.tree_util.keystr(p): tuple(x.shape) for p, x in
                   jax.tree_util.tree_leaves_with_path(stored)}
  expected_leaves = {jax.tree_util.keystr(p): tuple(x.shape) for p, x in
                     jax.tree_util.tree_leaves_with_path(expected)}
  for name, shape in expected_leaves.items():
    if name not in stored_leaves:
      raise CheckpointMismatchError(
          f"{where}: parameter params{name} {shape} of the configured model is not in the "
          f"checkpoint (is the gin model file the one the run trained?)")
    if stored_leaves[name] != shape:
      raise CheckpointMismatchError(
          f"{where}: parameter params{name} has shape {stored_leaves[name]} in the checkpoint "
          f"but {shape} in the configured model (is the gin model file the one the run "
          f"trained?)")
  extra = sorted(set(stored_leaves) - set(expected_leaves))
  if extra:
    raise CheckpointMismatchError(
        f"{where}: parameter params{extra[0]} {stored_leaves[extra[0]]} is in the checkpoint "
        f"but not in the configured model ({len(extra)} such)")


def load_params(checkpoint, model, mesh=None):
  """The parameters of a checkpoint, checked against ``model`` and placed on ``mesh``
  (replicated on the default device when None). Only the parameters are read, not optimizer
  state: ``params`` of a training (or reward-model) state, ``policy/params`` of a PPO run's.

  ``checkpoint`` is a run directory (its newest checkpoint), its ``checkpoints`` directory, or a
  ``checkpoints/<step>`` directory.
  """
  state_dir = find_state_dir(checkpoint)
  checkpointer = ocp.Checkpointer(ocp.PyTreeCheckpointHandler())
  metadata = checkpointer.metadata(state_dir)
  tree = getattr(metadata, "item_metadata", metadata)
  tree = getattr(tree, "tree", tree)
  prefix = ("policy",) if isinstance(tree, dict) and "policy" in tree else ()
  for key in prefix:
    tree = tree[key]
  if not isinstance(tree, dict) or "params" not in tree:
    raise CheckpointMismatchError(f"{state_dir}: not a meena_jax train state (no 'params')")
  expected = state_lib.abstract_params(model, mesh)
  check_matches(tree["params"], expected, str(state_dir))
  if mesh is None:
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    expected = jax.tree_util.tree_map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device), expected)
  item = {"params": expected}
  restore_args = {"params": ocp.checkpoint_utils.construct_restore_args(expected)}
  for key in reversed(prefix):
    item, restore_args = {key: item}, {key: restore_args}
  restored = checkpointer.restore(state_dir, args=ocp.args.PyTreeRestore(
      item=item, restore_args=restore_args, partial_restore=True))
  for key in prefix:
    restored = restored[key]
  return restored["params"]


def checkpoint_step(checkpoint) -> Optional[int]:
  """The training step of the checkpoint ``load_params`` would read."""
  name = find_state_dir(checkpoint).parent.name
  return int(name) if name.isdigit() else None
