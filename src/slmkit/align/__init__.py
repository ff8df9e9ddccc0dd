"""Alignment: preference objectives (DPO and its variants) on the one Trainer.

dpo_loss.py: per-sequence log-probabilities over completion tokens and the DPO losses (sigmoid, IPO, hinge,
robust) with the metrics users read (rewards/chosen, rewards/rejected, margins, accuracies).
"""
