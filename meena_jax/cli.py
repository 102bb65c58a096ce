"""The gin edge: ``--gin_file``/``--gin.KEY=VALUE`` flags in, configured objects out.

Every gin registration is here; only the commands (``commands.py`` and the ``__main__`` modules
of posttrain, safety and ssa) import this. Library code takes plain arguments, so tests call it
without gin. Flags follow T5X:

  python -m meena_jax summary --gin_file=gin/models/et_tiny.gin --gin.ModelConfig.d_model=128

A ``--gin.KEY=VALUE`` whose value is not a gin literal (``/tmp/run``) is taken as a string, so
paths need no extra quotes. Gin files are looked up relative to the working directory, then the
repository root, then any ``--gin_search_path``.
"""
import argparse
import ast
import logging
import pathlib
import re
from typing import Sequence

import gin

from meena_jax import config, slices

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent

# The gin name of every configurable is its own name: bindings read `ModelConfig.d_model`,
# `train.batch_size`, `get_task.name`.
ModelConfig = gin.external_configurable(config.ModelConfig, name="ModelConfig")


def register_training():
  """Makes ``train`` and ``get_task`` configurable. Called by the train command before it
  parses gin, so that commands which only build models need not import TensorFlow or orbax."""
  from meena_jax import eval as evaluation  # pylint: disable=import-outside-toplevel
  from meena_jax import train  # pylint: disable=import-outside-toplevel
  from meena_tasks import seqio_tasks  # pylint: disable=import-outside-toplevel
  if not _registered("train"):
    gin.external_configurable(seqio_tasks.get_task, name="get_task")
    gin.external_configurable(train.train, name="train")
    gin.external_configurable(evaluation.evaluate_checkpoint, name="evaluate_checkpoint")


# XLA:CPU hands matmuls to YNNPACK by default. A decoding step is almost only [N, d] x [d, d']
# products with N = 20 rows, and XLA's own kernels run those faster: with this fusion off a
# sample-and-rank step of the small ET took 71-80 ms instead of 87-97 ms (bench/README.md).
# The option exists only for the CPU backend.
CPU_DECODING_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}


def decoding_compiler_options():
  """XLA options for the decoding programs a command runs on this machine's devices."""
  import jax  # pylint: disable=import-outside-toplevel
  return CPU_DECODING_OPTIONS if jax.default_backend() == "cpu" else None


def configure_logging(level: int = logging.INFO):
  """The root logger at ``level`` with one handler, set once by a command's ``main``. orbax
  installs a root handler at WARNING when it is imported, which turns a plain
  ``logging.basicConfig`` into a no-op (no "resumed at step N" ever showed); ``force``
  replaces it."""
  logging.basicConfig(level=level, format="%(asctime)s %(name)s %(message)s", force=True)
  # jax's INFO "Unable to initialize backend 'tpu'" is the [tpu] extra's libtpu finding no TPU.
  logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)


def add_distributed_flags(parser: argparse.ArgumentParser):
  """Flags of a command that may run as one of several processes (hosts)."""
  group = parser.add_argument_group("multi-host")
  group.add_argument("--distributed", action="store_true",
                     help="call jax.distributed.initialize() with no arguments: the cluster "
                          "(TPU pod, SLURM, ...) is detected from the environment")
  group.add_argument("--coordinator_address", help="host:port of process 0 (explicit setup)")
  group.add_argument("--num_processes", type=int, help="number of processes (explicit setup)")
  group.add_argument("--process_id", type=int, help="this process's index (explicit setup)")


def initialize_distributed(args: argparse.Namespace):
  """``jax.distributed.initialize`` from the flags (all three explicit ones, or
  ``--distributed``); single-process otherwise. CPU processes talk over gloo."""
  explicit = [args.coordinator_address, args.num_processes, args.process_id]
  if any(v is not None for v in explicit):
    if any(v is None for v in explicit):
      raise SystemExit("--coordinator_address, --num_processes and --process_id go together")
    import jax  # pylint: disable=import-outside-toplevel
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(args.coordinator_address, args.num_processes, args.process_id)
  elif args.distributed:
    import jax  # pylint: disable=import-outside-toplevel
    jax.distributed.initialize()


def register_decoding():
  """Makes ``DecodingConfig`` and ``load_responder`` configurable for the chat command, and
  the training configurables too: chat reads a run file, whose task gives the vocabulary."""
  from meena_jax import chat, decoding  # pylint: disable=import-outside-toplevel
  register_training()
  if not _registered("load_responder"):
    gin.external_configurable(decoding.DecodingConfig, name="DecodingConfig")
    gin.external_configurable(chat.load_responder, name="load_responder")


def register_posttrain():
  """The post-training configurables (SFT steps, RM, DPO, PPO, policy evaluation) and the
  training ones they build on; the safety suite's RM judge parses the same gin files."""
  from meena_jax.posttrain import commands, ppo  # pylint: disable=import-outside-toplevel
  register_training()
  if not _registered("train_reward_model"):
    gin.external_configurable(commands.sft_steps, name="sft_steps")
    gin.external_configurable(commands.train_reward_model, name="train_reward_model")
    gin.external_configurable(commands.evaluate_reward_model, name="evaluate_reward_model")
    gin.external_configurable(commands.train_dpo, name="train_dpo")
    gin.external_configurable(commands.train_ppo, name="train_ppo")
    gin.external_configurable(commands.evaluate_policies, name="evaluate_policies")
    gin.external_configurable(ppo.PPOConfig, name="PPOConfig")


def _registered(name: str) -> bool:
  try:
    gin.get_configurable(name)
    return True
  except ValueError:
    return False


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
  slices.quiet_libtpu()
  # SeqIO and TFDS log advice (caching, packing) through absl at WARNING on every run; real
  # problems still show, and meena_jax's own warnings use their own loggers.
  logging.getLogger("absl").setLevel(logging.ERROR)
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
  # gin logs an ERROR for every search path an include is not under before it finds it; a
  # file found nowhere still raises, naming it.
  logging.disable(logging.ERROR)
  try:
    gin.parse_config_files_and_bindings(args.gin_file, [_binding(b) for b in gin_bindings])
  except ValueError as error:
    required = re.match(r"(\w+)/macro\.value set to `%gin\.REQUIRED`", str(error))
    if required:
      raise SystemExit(f"the {required[1]} macro is required: pass --gin.{required[1]}=...")
    raise
  finally:
    logging.disable(logging.NOTSET)
  return args


def model_config() -> config.ModelConfig:
  """The ``ModelConfig`` the parsed gin files describe (their errors name the binding)."""
  return ModelConfig()


def configured_train():
  """Runs the gin-bound ``train``; the parsed and the operative configs go to ``MODEL_DIR``.
  ``MODEL_DIR`` (local or ``gs://``) is checked writable first; a run that fails for want of
  its data leaves no ``MODEL_DIR`` behind that it created."""
  from meena_jax import storage  # pylint: disable=import-outside-toplevel
  location = require("train.model_dir", "MODEL_DIR", "/path/to/run")
  init_checkpoint = bound_arguments("train", ["init_checkpoint"]).get("init_checkpoint")
  if init_checkpoint:  # Checked before the task is tokenised or the step compiled.
    from meena_jax import checkpoints  # pylint: disable=import-outside-toplevel
    try:
      checkpoints.require(init_checkpoint, "train.init_checkpoint")
    except storage.StorageError as error:
      raise SystemExit(f"error: {error}") from None
  try:
    fresh = not storage.path(location).exists()
    model_dir = storage.writable_dir(location, "MODEL_DIR")
  except storage.StorageError as error:
    raise SystemExit(f"{error}; choose another --gin.MODEL_DIR") from None
  storage.write_text(model_dir / "config.gin", gin.config_str())
  from meena_tasks import sources  # pylint: disable=import-outside-toplevel

  from meena_jax import input_pipeline, token_store  # pylint: disable=import-outside-toplevel
  try:
    records = gin.get_configurable("train")()
  except (sources.DataError, token_store.CacheDirError, input_pipeline.InputConfigError,
          storage.StorageError) as error:
    if fresh:
      storage.remove_tree(model_dir)
    raise SystemExit(f"error: {str(error).splitlines()[0]}") from None
  except BaseException:
    storage.write_text(model_dir / "operative_config.gin", gin.operative_config_str())
    raise
  storage.write_text(model_dir / "operative_config.gin", gin.operative_config_str())
  return records


def configured(name: str, required: dict = None, **overrides):
  """Calls the gin configurable ``name`` with ``overrides``, first checking that each
  ``required`` parameter (-> the macro that sets it) is bound."""
  for parameter, macro in (required or {}).items():
    if parameter not in overrides:
      require(f"{name}.{parameter}", macro)
  return gin.get_configurable(name)(**overrides)


def bound_arguments(configurable: str, names) -> dict:
  """``{name: value}`` of the parameters among ``names`` that the parsed gin config binds for
  ``configurable`` (macros resolved; unbound and REQUIRED ones left out), without calling it."""
  values = {name: _value(f"{configurable}.{name}") for name in names}
  return {name: value for name, value in values.items() if value is not None}


def require(binding: str, macro: str, example: str = "..."):
  """The value of ``binding``, or exit naming the macro to pass when it is unset/REQUIRED."""
  value = _value(binding)
  if value is None:
    raise SystemExit(f"{binding} (the {macro} macro) is required: pass "
                     f"--gin.{macro}={example}")
  return value


def _value(binding: str):
  """A binding's value with macros resolved (None when unbound or still REQUIRED)."""
  try:
    value = gin.query_parameter(binding)
  except ValueError:
    return None
  while isinstance(value, gin.config.ConfigurableReference):
    if value.configurable.name != "macro":
      return value
    try:
      value = value.scoped_configurable_fn()
    except Exception:  # pylint: disable=broad-except  # gin.REQUIRED raises on evaluation.
      return None
  return value
