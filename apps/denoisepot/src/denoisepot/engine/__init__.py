"""The training engine around the packages, on Lightning Fabric.

``pretrain`` (PretrainConfig, run_pretraining), ``data`` (mixed stores, seeded batches for any
number of processes), ``state`` (atomic checkpoints and resumable training state),
``progress`` (rich progress bar), ``schedule`` (warmup, plateau, cosine; or warmup, then
reduce on plateau) and ``finetune``.
"""
