"""Post-training: SFT runs, reward models, DPO and PPO-ptx on top of a trained Meena model."""
