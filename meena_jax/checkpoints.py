"""Orbax checkpoints: the trainer's manager, resuming past a corrupt step, and loading just the
parameters of a run for evaluation and chat.

A run directory (``MODEL_DIR``, local or ``gs://``, see ``storage``) holds
``checkpoints/<step>/`` with two items: ``state`` (the ``TrainState``) and ``data`` (the input
position). Everything that reads a checkpoint goes through this module, so the layout is
written down once. A step is complete when orbax has finalized it: locally its temporary
directory was renamed into place; on GCS, which cannot rename a directory atomically, its
``commit_success.txt`` marker was written after every other file.
"""
import logging
from typing import Optional

import jax
import orbax.checkpoint as ocp

from meena_jax import state as state_lib
from meena_jax import storage

log = logging.getLogger("meena_jax.checkpoints")


class CheckpointMismatchError(ValueError):
  """A checkpoint's parameters are not the configured model's; the message names the first
  parameter that differs and how."""


class UnreadableCheckpointError(RuntimeError):
  """No checkpoint of a run could be read; one line naming the last one tried and why."""


def _first_line(error: Exception) -> str:
  """Orbax and TensorStore errors run to hundreds of lines; their first names the cause."""
  text = str(error).strip().splitlines()
  return f"{type(error).__name__}: {text[0][:400] if text else ''}"


def checkpoint_manager(model_dir, keep: int = 3) -> ocp.CheckpointManager:
  """Named items per step: ``state`` (the TrainState) and ``data`` (the input position)."""
  return ocp.CheckpointManager(
      storage.path(model_dir) / "checkpoints",
      options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
      item_names=("state", "data"))


def restore_latest(manager: ocp.CheckpointManager, abstract_state):
  """(state, data item) of the newest readable checkpoint, or None.

  A corrupt checkpoint, or one whose upload was cut off (no commit marker on GCS), is moved
  aside to ``<MODEL_DIR>/checkpoints_unreadable/`` (kept for inspection, named in the warning)
  and the one before it is used. Moving it matters: orbax saves no step at or below its newest,
  so a corrupt newest step left in place would never be replaced by the retrained one; and a
  half-uploaded step's leftover files must not mix with the step saved again.
  """
  complete = set(manager.all_steps())
  incomplete = _step_dirs(manager.directory) - complete
  _sync("listed the checkpoints")  # Every process listed before process 0 moves any.
  for step in sorted(incomplete, reverse=True):
    moved = _move_aside(manager, step)
    log.warning("checkpoint at step %d is incomplete (orbax never finalized it: the save was "
                "cut off); moved to %s", step, moved)
  for step in sorted(complete, reverse=True):
    try:
      restored = manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
      return restored["state"], restored["data"]
    except Exception as error:  # pylint: disable=broad-except  # Orbax raises many kinds.
      moved = _move_aside(manager, step)
      log.warning("checkpoint at step %d is unreadable (%s); moved to %s; trying the one before",
                  step, _first_line(error), moved)
  return None


def _step_dirs(directory) -> set:
  """The step numbers of ``directory``'s ``<step>/`` entries, finalized or not."""
  directory = storage.path(directory)
  if not directory.exists():
    return set()
  return {int(p.name) for p in directory.iterdir() if p.name.isdigit()}


def _move_aside(manager: ocp.CheckpointManager, step: int) -> storage.Path:
  """Moves ``checkpoints/<step>`` to ``checkpoints_unreadable/<step>[.N]`` (process 0 moves,
  every process waits for it) and makes the manager forget the step."""
  source = storage.path(manager.directory) / str(step)
  aside = source.parent.parent / "checkpoints_unreadable"
  target, n = aside / str(step), 1
  while target.exists():
    target, n = aside / f"{step}.{n}", n + 1
  if jax.process_index() == 0:
    storage.move_tree(source, target)
  _sync(f"moved checkpoint {step} aside")
  manager.reload()
  return target


def _sync(what: str):
  """A barrier of every process (nothing with one)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    multihost_utils.sync_global_devices(f"meena_jax {what}")


def save(manager: ocp.CheckpointManager, step: int, state, data: dict):
  """Saves ``state`` and the ``data`` item (the input position) as ``step``. A save orbax
  skips (it returns False for a step at or below its newest) raises instead of passing
  silently, so a run never ends believing it saved what it did not."""
  if not manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                    data=ocp.args.JsonSave(data))):
    raise RuntimeError(f"checkpoint at step {step} was not saved in {manager.directory}: "
                       f"orbax skipped it (its newest step is {manager.latest_step()})")


def require(location, setting: str = "CHECKPOINT") -> list:
  """``state_dirs(location)``, or ``storage.StorageError`` naming ``setting`` when the bucket,
  the path or any complete checkpoint in it is missing: what a command checks before it
  prepares data or compiles anything."""
  storage.existing(location, setting, "checkpoint or run directory")
  try:
    return state_dirs(location)
  except FileNotFoundError:
    raise storage.error(location, setting, "no complete checkpoint in it (no "
                                           "checkpoints/<step>/state directory)") from None


def find_state_dir(path) -> storage.Path:
  """``MODEL_DIR``, ``MODEL_DIR/checkpoints`` or ``MODEL_DIR/checkpoints/<step>`` -> the
  ``state`` item directory of that step (the newest complete one for a run directory)."""
  return state_dirs(path)[0]


def state_dirs(path) -> list:
  """The ``state`` item directories ``path`` names, newest first: every complete step of a run
  (or its ``checkpoints`` directory), or the one step given. Absolute paths: orbax's
  tensorstore reader refuses relative ones (and its ``metadata`` then reports no tree). A step
  orbax never finalized (its save was cut off) is passed over with a warning."""
  path = storage.path(path)
  if (path / "state").is_dir():
    return [path / "state"]
  if path.name == "state" and path.is_dir():
    return [path]
  root = path / "checkpoints" if (path / "checkpoints").is_dir() else path
  if not root.is_dir():
    raise FileNotFoundError(f"checkpoint {path}: no such directory")
  steps = []
  for step in sorted(_step_dirs(root), reverse=True):
    if not (root / str(step) / "state").is_dir():
      continue
    if not ocp.utils.is_checkpoint_finalized(root / str(step)):
      log.warning("checkpoint %s is incomplete (orbax never finalized it); passed over",
                  root / str(step))
      continue
    steps.append(step)
  if not steps:
    raise FileNotFoundError(f"checkpoint {path}: no checkpoints/<step>/state directory in it")
  return [root / str(step) / "state" for step in steps]


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


def load_params(checkpoint, model, mesh=None, subtree: str = ""):
  """The parameters of a checkpoint, checked against ``model`` and placed on ``mesh``
  (replicated on the default device when None): ``load``'s parameters."""
  return load(checkpoint, model, mesh, subtree)[0]


def load(checkpoint, model, mesh=None, subtree: str = "") -> tuple:
  """(parameters, step) of a checkpoint. Only the parameters are read, not optimizer state:
  ``params`` of the train state at ``subtree`` of the saved state (``""``: the top, as the
  trainer, the reward model and DPO save it; a run with several states names one, keys joined
  by ``/``: PPO's policy is ``"policy"``).

  ``checkpoint`` is a run directory (its newest readable checkpoint: an unreadable one gets one
  warning line naming it and the cause, and the one before it is tried, as in training), its
  ``checkpoints`` directory, or a ``checkpoints/<step>`` directory. Raises
  ``UnreadableCheckpointError`` (one line) when none can be read.
  """
  candidates, failure = state_dirs(checkpoint), None
  for state_dir in candidates:
    try:
      params = _read_params(state_dir, model, mesh, tuple(k for k in subtree.split("/") if k))
    except CheckpointMismatchError:
      raise
    except Exception as error:  # pylint: disable=broad-except  # Orbax raises many kinds.
      failure = f"{state_dir.parent}: {_first_line(error)}"
      if state_dir is not candidates[-1]:
        log.warning("checkpoint %s is unreadable; trying the one before", failure)
      continue
    step = state_dir.parent.name
    return params, int(step) if step.isdigit() else None
  raise UnreadableCheckpointError(f"no readable checkpoint in {checkpoint} (the last tried, "
                                  f"{failure})")


def state_keys(checkpoint) -> list:
  """The top-level keys of the newest readable checkpoint's saved state (``params``,
  ``opt_state``, ``step`` for one train state; a trainer with several names them)."""
  for state_dir in state_dirs(checkpoint):
    tree = _metadata_tree(state_dir)
    if isinstance(tree, dict) and tree:
      return sorted(tree)
  raise UnreadableCheckpointError(f"no readable checkpoint metadata in {checkpoint}")


def _metadata_tree(state_dir: storage.Path):
  metadata = ocp.Checkpointer(ocp.PyTreeCheckpointHandler()).metadata(state_dir)
  tree = getattr(metadata, "item_metadata", metadata)
  return getattr(tree, "tree", tree)


def _read_params(state_dir: storage.Path, model, mesh, prefix: tuple):
  checkpointer = ocp.Checkpointer(ocp.PyTreeCheckpointHandler())
  tree = _metadata_tree(state_dir)
  if not tree:  # orbax logs a warning and returns no metadata for a corrupt tree.
    raise UnreadableCheckpointError(f"{state_dir}: its metadata cannot be read")
  for depth, key in enumerate(prefix):
    if not isinstance(tree, dict) or key not in tree:
      raise CheckpointMismatchError(
          f"{state_dir}: no {'/'.join(prefix[:depth + 1])} in the saved state (its top level "
          f"holds {', '.join(sorted(_metadata_tree(state_dir)))})")
    tree = tree[key]
  if not isinstance(tree, dict) or "params" not in tree:
    where = "/".join(prefix) or "the top level of the saved state"
    keys = ", ".join(sorted(tree)) if isinstance(tree, dict) else type(tree).__name__
    raise CheckpointMismatchError(
        f"{state_dir}: no 'params' at {where} (it holds {keys}): not a train state, or one "
        f"inside a larger state whose subtree must be named (a PPO run's policy: \"policy\", "
        f"--gin.CHECKPOINT_SUBTREE=policy for eval and chat)")
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
  """The training step of a run's newest checkpoint (``load`` says which it read)."""
  name = find_state_dir(checkpoint).parent.name
  return int(name) if name.isdigit() else None
