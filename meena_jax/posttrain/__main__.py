"""Post-training commands (InstructGPT's three steps, and DPO), configured with gin:

  python -m meena_jax posttrain sft --gin_file=gin/posttrain/sft_et_tiny_chitchat.gin \
      --gin.INIT_CHECKPOINT=runs/pretrain --gin.MODEL_DIR=runs/sft
  python -m meena_jax posttrain rm  --gin_file=gin/posttrain/rm_et_tiny_hh.gin \
      --gin.INIT_CHECKPOINT=runs/sft --gin.RUN_DIR=runs/rm
  python -m meena_jax posttrain rm_eval --gin_file=gin/posttrain/rm_et_tiny_hh.gin \
      --gin.CHECKPOINT=runs/rm
  python -m meena_jax posttrain dpo --gin_file=gin/posttrain/dpo_et_tiny_hh.gin \
      --gin.INIT_CHECKPOINT=runs/sft --gin.RUN_DIR=runs/dpo
  python -m meena_jax posttrain ppo --gin_file=gin/posttrain/ppo_et_tiny_hh.gin \
      --gin.POLICY_CHECKPOINT=runs/sft --gin.REWARD_CHECKPOINT=runs/rm --gin.RUN_DIR=runs/ppo
  python -m meena_jax posttrain report runs/ppo [runs/ppo_beta0 ...] [--output curves.png]
  python -m meena_jax posttrain policy_eval --gin_file=gin/posttrain/policy_eval_et_tiny_hh.gin \
      --gin.REFERENCE=runs/sft --gin.REWARD_CHECKPOINT=runs/rm \
      --gin.POLICIES="{'sft': 'runs/sft', 'ppo': 'runs/ppo', 'dpo': 'runs/dpo'}"

``sft`` is the trainer (``meena_jax.train``) started from a checkpoint's parameters; the others
call ``posttrain/commands.py``; ``cli.register_posttrain`` makes them configurable.
"""
import argparse
import json
import sys

COMMANDS = ("sft", "rm", "rm_eval", "dpo", "ppo", "policy_eval", "report")


def _report(argv):
  from meena_jax.posttrain import report  # pylint: disable=import-outside-toplevel
  parser = argparse.ArgumentParser(prog="python -m meena_jax posttrain report",
                                   description=report.__doc__)
  parser.add_argument("run_dirs", nargs="+", help="PPO run directories (one line each)")
  parser.add_argument("--output", help="PNG path (default: <first run>/ppo.png)")
  args = parser.parse_args(argv)
  print(report.plot(args.run_dirs, args.output))


def _check_checkpoints(name: str):
  """Every checkpoint the command reads (local or gs://) exists, before data is prepared or a
  program compiled; otherwise one line naming the binding."""
  from meena_jax import checkpoints, cli, storage  # pylint: disable=import-outside-toplevel
  bound = cli.bound_arguments(name, CHECKPOINT_PARAMETERS)
  given = {f"{name}.{k}": v for k, v in bound.items() if k != "policies"}
  given.update({f"{name}.policies[{k!r}]": v for k, v in bound.get("policies", {}).items()})
  try:
    for binding, location in given.items():
      if location:
        checkpoints.require(location, binding)
  except storage.StorageError as error:
    raise SystemExit(f"error: {error}") from None


CHECKPOINT_PARAMETERS = ("checkpoint", "init_checkpoint", "policy_checkpoint",
                         "reward_checkpoint", "reference_checkpoint", "policies")


def main(argv=None):
  argv = sys.argv[1:] if argv is None else argv
  if argv[:1] in (["-h"], ["--help"]):
    print(__doc__)
    return None
  if not argv or argv[0] not in COMMANDS:
    raise SystemExit(f"usage: python -m meena_jax posttrain {{{','.join(COMMANDS)}}} ...\n"
                     f"{__doc__}")
  command, argv = argv[0], argv[1:]
  if command == "report":
    return _report(argv)
  import gin  # pylint: disable=import-outside-toplevel
  from meena_jax import cli  # pylint: disable=import-outside-toplevel
  cli.register_posttrain()
  cli.configure_logging()
  parser = argparse.ArgumentParser(prog=f"python -m meena_jax posttrain {command}")
  cli.add_distributed_flags(parser)
  args = cli.parse_args(argv, __doc__, parser)
  cli.initialize_distributed(args)
  if command == "sft":
    records = cli.configured_train()
    last = [r for r in records if "loss" in r][-1:]
    if last:
      print(f"step {last[0]['step']}: loss {last[0]['loss']:.3f}")
    return None
  name = {"rm": "train_reward_model", "rm_eval": "evaluate_reward_model", "dpo": "train_dpo",
          "ppo": "train_ppo", "policy_eval": "evaluate_policies"}[command]
  run_dir_macro = {"rm_eval": None, "policy_eval": None}.get(command, "RUN_DIR")
  if run_dir_macro:
    cli.require(f"{name}.run_dir", run_dir_macro, "/path/to/run")
  _check_checkpoints(name)
  result = gin.get_configurable(name)()
  if command == "ppo":
    result = result[-1] if result else {}
  if command == "policy_eval":  # The answers are in the output file.
    result = {name: {k: v for k, v in summary.items() if not isinstance(v, list)}
              for name, summary in result["policies"].items()}
  print(json.dumps(result, indent=2))
  return None


if __name__ == "__main__":
  main()
