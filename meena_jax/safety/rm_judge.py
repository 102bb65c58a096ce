"""The reward model as a harmlessness judge: its score of each (prompt, answer) pair.

The checkpoint is one ``python -m meena_jax posttrain rm`` wrote (``RewardModel``: the
seq2seq with a scalar head read at the answer's EOS), loaded as
``posttrain.commands.evaluate_reward_model`` loads it. Prompts are tokenized as the chat reads
contexts (most recent ``input_length`` tokens), answers as responses (cut to
``target_length - 1`` tokens, then EOS), in fixed-shape batches so the scorer compiles once.
"""
from typing import Sequence

import jax
import numpy as np

EOS = 1


class RewardJudge:
  """Scores (prompt, answer) pairs with a reward model's parameters."""

  def __init__(self, model, params, vocabulary, input_length: int = 128,
               target_length: int = 64, batch_size: int = 16):
    from meena_jax.posttrain import reward_model  # pylint: disable=import-outside-toplevel
    self.vocabulary, self.params = vocabulary, params
    self.input_length, self.target_length, self.batch_size = (input_length, target_length,
                                                              batch_size)
    self._reward = jax.jit(lambda p, e, r: reward_model.reward(model, p, e, r))

  def _encode(self, prompts, answers):
    from meena_tasks import seqio_tasks  # pylint: disable=import-outside-toplevel
    contexts = seqio_tasks.tokenize_contexts([[p] for p in prompts], self.vocabulary,
                                             self.input_length)
    inputs = np.zeros((self.batch_size, self.input_length), np.int32)
    targets = np.zeros((self.batch_size, self.target_length), np.int32)
    for row, ((ids, _), answer) in enumerate(zip(contexts, answers)):
      inputs[row, :len(ids)] = ids
      tokens = list(self.vocabulary.encode(answer))[:self.target_length - 1] + [EOS]
      targets[row, :len(tokens)] = tokens
    return inputs, targets

  def score(self, prompts: Sequence[str], answers: Sequence[str], progress: bool = True):
    """One float per pair (higher = the reward model prefers it: more harmless)."""
    import tqdm  # pylint: disable=import-outside-toplevel
    scores = []
    for start in tqdm.trange(0, len(prompts), self.batch_size, desc="reward model",
                             disable=not progress):
      chunk = slice(start, start + self.batch_size)
      inputs, targets = self._encode(prompts[chunk], answers[chunk])
      values = np.asarray(jax.device_get(self._reward(self.params, inputs, targets)))
      scores.extend(float(v) for v in values[:len(prompts[chunk])])
    return scores


def load(model_config, checkpoint: str, vocabulary, **kwargs) -> RewardJudge:
  """A ``RewardJudge`` over a reward-model checkpoint (a run directory or its
  ``checkpoints/<step>``); a checkpoint of another shape is refused naming the parameter."""
  from meena_jax import checkpoints  # pylint: disable=import-outside-toplevel
  from meena_jax.posttrain.reward_model import RewardModel  # pylint: disable=import-outside-toplevel
  model = RewardModel(model_config)
  return RewardJudge(model, checkpoints.load_params(checkpoint, model), vocabulary, **kwargs)
