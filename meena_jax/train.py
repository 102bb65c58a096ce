"""The main job: train a Meena model on a SeqIO task, checkpointing and logging as it goes.

  python -m meena_jax train --gin_file=gin/runs/et_tiny_chitchat.gin --gin.MODEL_DIR=/tmp/run

``train()`` takes plain keyword arguments (tests call it directly); gin binds them only in
``main``. The file reads in the order the run happens: mesh, data, state, restore, loop.
"""
import dataclasses
import logging
import math
import sys
from typing import Any, Callable, Optional

import jax
import numpy as np
import optax

from meena_jax import checkpoints, input_pipeline, loop, partitioning, storage, token_store
from meena_jax import state as state_lib
from meena_jax import train_step
from meena_jax import eval as evaluation
from meena_jax.config import ModelConfig
from meena_jax.model import Seq2Seq

log = logging.getLogger("meena_jax.train")


@dataclasses.dataclass(frozen=True)
class Programs:
  """What a run compiles, built from its settings alone (no data, nothing allocated): the
  trainer runs these, and ``meena_jax.compile`` lowers the same objects for a TPU slice."""
  model: Seq2Seq
  schedule: Callable
  optimizer: optax.GradientTransformation
  state: state_lib.TrainState   # ShapeDtypeStructs with their shardings.
  train_step: Any               # jitted (state, batch, key) -> (state, metrics).
  train_batch: dict             # ShapeDtypeStructs of a packed global batch.
  score: Any                    # jitted (params, batch) -> (NLL sum, tokens): eval.
  eval_batch: dict              # ShapeDtypeStructs of an unpacked global eval batch.
  key: jax.ShapeDtypeStruct     # The dropout base key.


def programs(*, model_config: ModelConfig, mesh, batch_size: int, input_length: int,
             target_length: int, train_steps: int, learning_rate: float = 0.01,
             constant_steps: int = 10_000, lr_schedule: str = "meena",
             num_microbatches: int = 1, eval_batch_size: Optional[int] = None,
             adafactor_min_dim_to_factor: int = 128,
             packed_input_length: Optional[int] = None,
             packed_target_length: Optional[int] = None) -> Programs:
  """The train step and eval step of a run on ``mesh``, with the abstract values they take.
  Training rows are ``packed_*_length`` long (default: the per-example cut); eval rows hold
  one example each, cut to ``input_length`` and ``target_length``."""
  model = Seq2Seq(model_config)
  schedule = train_step.learning_rate_schedule(lr_schedule, learning_rate, constant_steps,
                                               train_steps)
  optimizer = train_step.make_optimizer(schedule=schedule,
                                        min_dim_size_to_factor=adafactor_min_dim_to_factor)
  abstract = state_lib.abstract_state(state_lib.abstract_params(model, mesh), optimizer)
  batch_sharding = partitioning.batch_sharding(mesh)
  return Programs(
      model=model, schedule=schedule, optimizer=optimizer, state=abstract,
      train_step=train_step.jit_train_step(model, optimizer, state_lib.shardings(abstract),
                                           batch_sharding, num_microbatches),
      train_batch=input_pipeline.abstract_batch(batch_size, packed_input_length or input_length,
                                                packed_target_length or target_length,
                                                pack=True, mesh=mesh),
      score=evaluation.make_score_fn(model, state_lib.shardings(abstract.params), mesh),
      eval_batch=input_pipeline.abstract_batch(eval_batch_size or batch_size, input_length,
                                               target_length, pack=False, mesh=mesh),
      key=jax.ShapeDtypeStruct((), jax.eval_shape(jax.random.key, 0).dtype,
                               sharding=partitioning.replicated(mesh)))


def train(*, model_config: ModelConfig, task, model_dir: str, batch_size: int,
          input_length: int, target_length: int, train_steps: int,
          learning_rate: float = 0.01, constant_steps: int = 10_000, num_microbatches: int = 1,
          seed: int = 0, mesh_data: int = -1, mesh_model: int = 1, log_every: int = 10,
          checkpoint_every: int = 200, keep_checkpoints: int = 3,
          peak_flops_per_device: Optional[float] = None, eval_every: int = 0,
          eval_split: str = "validation", eval_batch_size: Optional[int] = None,
          input_shards: Optional[int] = None, lr_schedule: str = "meena",
          init_checkpoint: Optional[str] = None, adafactor_min_dim_to_factor: int = 128,
          packed_input_length: Optional[int] = None, packed_target_length: Optional[int] = None,
          packing_bins: int = 64, data_cache_dir: Optional[str] = None,
          progress: bool = True) -> list[dict]:
  """Trains ``model_config`` on ``task`` (a ``seqio.Task``) for ``train_steps`` steps.

  Resumes from the newest checkpoint in ``model_dir``. Every ``eval_every`` steps (and at the
  end; 0: never) evaluates perplexity on ``eval_split``. Returns the logged records (train
  and eval), which also go to ``model_dir/metrics.jsonl`` (one JSON object a line) and to
  TensorBoard under ``model_dir/tensorboard``. ``input_shards`` (default: one per process)
  fixes how the data is split, so runs on different numbers of hosts see the same batches.
  ``lr_schedule``: ``meena`` or ``cosine`` (to 0 at ``train_steps``). ``init_checkpoint``: a
  run whose parameters a fresh run starts from (fine-tuning; fresh step count and optimizer);
  a checkpoint of this run's own always wins, so a resumed fine-tune continues.
  ``adafactor_min_dim_to_factor``: see ``train_step.make_optimizer``.

  Each example is cut to ``input_length`` context tokens (the most recent) and
  ``target_length`` response tokens; training rows of ``packed_input_length`` and
  ``packed_target_length`` (default: the same) hold as many as first-fit packing over
  ``packing_bins`` rows fits. The task's train split is tokenised once under
  ``data_cache_dir`` (default: ``model_dir``), see ``token_store``.
  """
  model_dir = storage.writable_dir(model_dir, "MODEL_DIR")  # Local or gs://.

  # --- Mesh.
  mesh = partitioning.make_mesh(mesh_data, mesh_model)
  log.info("mesh %s over %d devices (%d processes)", dict(mesh.shape), mesh.size,
           jax.process_count())

  # The mesh and the axis rules, in scope for every program this run traces.
  with partitioning.activate(mesh):
    # --- Model, optimizer, the programs and the state, born sharded.
    run = programs(model_config=model_config, mesh=mesh, batch_size=batch_size,
                   input_length=input_length, target_length=target_length,
                   train_steps=train_steps, learning_rate=learning_rate,
                   constant_steps=constant_steps, lr_schedule=lr_schedule,
                   num_microbatches=num_microbatches, eval_batch_size=eval_batch_size,
                   adafactor_min_dim_to_factor=adafactor_min_dim_to_factor,
                   packed_input_length=packed_input_length,
                   packed_target_length=packed_target_length)

    # --- Restore, in order: (1) the newest readable checkpoint in model_dir, (2) the
    # parameters of init_checkpoint, (3) from scratch; the state is born sharded.
    def init():
      state = state_lib.create_state(run.model, run.optimizer, jax.random.key(seed), run.state)
      if init_checkpoint:
        log.info("parameters from %s; step and optimizer fresh", init_checkpoint)
        state = state.replace(params=checkpoints.load_params(init_checkpoint, run.model, mesh))
      return state
    manager, state, position = loop.start(model_dir, run.state, init, keep_checkpoints)
    start_step = int(state.step)

    # --- Data, continued where the checkpoint left it (a saved position: no replay).
    sources = token_store.tokenized_sources(
        task, "train", {"inputs": input_length, "targets": target_length},
        data_cache_dir or str(model_dir), progress=progress and jax.process_index() == 0)
    batches = input_pipeline.TrainInput(
        sources, batch_size, {"inputs": packed_input_length or input_length,
                            "targets": packed_target_length or target_length},
        seed=seed, input_shards=input_shards, packing_bins=packing_bins,
        progress=progress and jax.process_index() == 0)
    loop.continue_input(batches, position, start_step)

    # --- The step, compiled once; XLA's FLOP count of it feeds TFLOP/s and MFU.
    base_key = jax.random.key(seed + 1)
    compiled = run.train_step.lower(run.state, run.train_batch, run.key).compile()
    flops_per_step = float((compiled.cost_analysis() or {}).get("flops", 0.0))

    def step(state, number):
      del number  # The dropout key folds in state.step.
      host_batch = next(batches)
      state, metrics = compiled(state, input_pipeline.to_global(host_batch, mesh), base_key)
      return state, {**metrics, **input_pipeline.fill(host_batch)}

    def summarize(number, sums, steps, seconds):
      return _record(sums, steps, seconds, run.schedule(np.int32(number)), flops_per_step,
                     peak_flops_per_device)

    # --- Evaluation: the same `evaluate` as `python -m meena_jax eval`, batches read once.
    eval_batches = (evaluation.host_eval_batches(task, eval_split, eval_batch_size or batch_size,
                                                 input_length, target_length)
                    if eval_every else None)

    def evaluate(state):
      result = evaluation.evaluate(run.score, state.params, eval_batches, mesh)
      return {"eval_loss": result["loss"], "eval_perplexity": result["perplexity"],
              "eval_s": result["seconds"]}

    # --- The loop; every process saves its shards, process 0 writes the metrics.
    _, records = loop.run(
        step, state, first_step=start_step, manager=manager, run_dir=model_dir,
        cadence=loop.Cadence(train_steps, log_every, checkpoint_every, eval_every,
                             keep_checkpoints),
        summarize=summarize, evaluate=evaluate if eval_every else None, progress=progress,
        position=lambda number: {"batches": number, "seed": seed, "input": batches.state()},
        shown=("loss", "tokens_per_s", "target_fill", "eval_perplexity"))
    return records


def _record(sums, steps, seconds, learning_rate, flops_per_step, peak_flops) -> dict:
  """One log line: loss and perplexity are token-weighted over the window's steps; fill is the
  share of real tokens in the packed rows (host-side). XLA's FLOP count is the program one
  device runs, so TFLOP/s and MFU are per device."""
  loss = sums["loss_sum"] / max(sums["token_count"], 1.0)
  seconds_per_step = seconds / steps
  record = {"loss": loss, "perplexity": math.exp(min(loss, 50.0)),
            "learning_rate": float(learning_rate),
            "tokens_per_s": sums["token_count"] / seconds,
            "step_s": seconds_per_step,
            "grad_norm": sums["grad_norm"] / steps,
            "param_norm": sums["param_norm"] / steps,
            "tflops_per_device": flops_per_step / seconds_per_step / 1e12,
            **{k: sums[k] / steps for k in ("input_fill", "target_fill", "examples_per_row")}}
  if peak_flops:
    record["mfu"] = flops_per_step / seconds_per_step / peak_flops
  return record


if __name__ == "__main__":  # python -m meena_jax train: an alias of the edge.
  from meena_jax import commands  # pylint: disable=import-outside-toplevel
  commands.main(["train", *sys.argv[1:]])
