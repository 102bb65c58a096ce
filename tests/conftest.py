"""Shared fixtures: tiny configs of both block types and random SeqIO-style batches."""
import dataclasses
import functools
import logging
import os
import tempfile

# XLA's CPU backend spends most of a test's time compiling; LLVM optimisation level 0 cuts that
# by ~40% on 2 cores and changes no test's tolerance. Set before jax is imported.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                             + " --xla_backend_optimization_level=0").strip()

from meena_jax import slices

slices.quiet_libtpu()  # libtpu (the [tpu] extra) is installed; no TPU is attached.

import flax.linen as nn  # pylint: disable=wrong-import-position
import jax  # pylint: disable=wrong-import-position
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from meena_jax.config import ModelConfig
from meena_jax.model import Seq2Seq

tfds.disable_progress_bar()  # Progress bars would fill the captured output of every test.
# Tests build the same small programs many times (every train() call compiles its step): a
# persistent compilation cache shared by the xdist workers turns repeats into disk reads.
jax.config.update("jax_compilation_cache_dir",
                  os.path.join(tempfile.gettempdir(), "meena_jax_test_compile_cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
# Tokenised train splits (train.data_cache_dir), shared by workers and sessions: a store's name
# carries its task, split, cut lengths and vocabulary hash, so a stale one is never read.
TOKEN_CACHE = os.path.join(tempfile.gettempdir(), "meena_jax_test_tokens")

# d_model 32 with 4 heads: the ET decoder's parallel self-attention gets 8 heads of width 4.
TINY = ModelConfig(vocab_size=61, d_model=32, num_heads=4, d_ff=64, num_encoder_layers=1,
                   num_decoder_layers=2, dropout_rate=0.1)


@pytest.fixture(params=["evolved", "transformer"])
def tiny_config(request) -> ModelConfig:
  return dataclasses.replace(TINY, block_type=request.param)


def random_tokens(rng: np.random.Generator, cfg: ModelConfig, shape):
  """Token ids in [2, vocab): never padding (0) nor EOS (1)."""
  return jnp.asarray(rng.integers(2, cfg.vocab_size, shape), jnp.int32)


def shift_right(targets):
  """Decoder inputs from targets, as SeqIO's feature converter makes them (start token 0)."""
  return jnp.pad(targets[:, :-1], ((0, 0), (1, 0)))


@functools.lru_cache(maxsize=None)
def init_params(cfg: ModelConfig, seed: int = 0):
  """Unboxed float parameters of ``Seq2Seq(cfg)`` (cached: XLA compiles slowly on 2 cores)."""
  tokens = jnp.ones((1, 4), jnp.int32)
  variables = jax.jit(Seq2Seq(cfg).init)(jax.random.key(seed), tokens, tokens)
  return nn.unbox(variables)["params"]


def memory_train_input(vocab_size: int, batch_size: int, row_lengths: dict, *, seed: int = 0,
                       examples: int = 64):
  """A real ``input_pipeline.TrainInput`` (packing, saveable position) over ``examples``
  random in-memory examples of 2 to 6 tokens a side: pretraining batches without a task."""
  from meena_jax import input_pipeline, token_store  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(1234)
  tokens, offsets = {}, {}
  for feature in token_store.FEATURES:
    lengths = rng.integers(2, 7, examples)
    tokens[feature] = rng.integers(2, vocab_size, int(lengths.sum())).astype(np.int32)
    offsets[feature] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
  store = token_store.TokenStore.from_arrays(tokens, offsets)
  return input_pipeline.TrainInput([(store, 1.0)], batch_size, row_lengths, seed=seed)


@pytest.fixture(scope="session")
def chitchat_dir(tmp_path_factory) -> str:
  """A data directory with chitchat prepared (~30 s). Modules using it carry
  ``pytest.mark.xdist_group("chitchat")`` so one worker prepares it once."""
  from meena_tasks import seqio_tasks
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  seqio_tasks.get_task("chitchat", data_dir)
  return data_dir


@pytest.fixture(scope="session")
def gcs(tmp_path_factory):
  """A Cloud Storage emulator (``tests/gcs_emulator.py``) that this process's GCS clients
  (TensorFlow's, tensorstore) and its subprocesses (given ``gcs.env(tag)``) reach; its
  traffic is counted under the tag ``tests``. Buckets are the tests' to create."""
  from tests import gcs_emulator  # pylint: disable=import-outside-toplevel
  emulator = gcs_emulator.GcsEmulator(tmp_path_factory.mktemp("gcs")).start()
  saved = {k: os.environ.get(k) for k in emulator.env()}
  emulator.apply("tests")
  yield emulator
  emulator.stop()
  for key, value in saved.items():
    if value is None:
      os.environ.pop(key, None)
    else:
      os.environ[key] = value


@pytest.fixture(autouse=True)
def _root_logging_restored():
  """A command's ``main`` run in-process replaces the root handler with one on that test's
  captured stderr (``cli.configure_logging``); later tests would log into a closed stream."""
  root = logging.getLogger()
  handlers, level = root.handlers[:], root.level
  yield
  root.handlers[:] = handlers
  root.setLevel(level)
