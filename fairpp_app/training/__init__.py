"""Fine-tuning a model toward one persona: SFT, WSFT, DPO and WDPO (paper section 7).

The package is layered so that nothing imports what imports it (no cycles), and so that
the CLI, the TUI and ``fairpp --help`` reach what they need without torch or mlx.

Plain Python, below everything else:
``methods`` (the registry: one entry per method), ``losses`` (the weighted-loss
arithmetic, run on torch and MLX arrays alike), ``config``, ``data``, ``schedule`` (step
counts and the learning rate), ``lora`` (the LoRA targets), ``checkpoints``,
``failures``, ``compare`` (answers against the personas').

The framework-free half of a run: ``session`` (row, data, files, events), ``ending``
(how a run ends), ``live_eval`` (the similarity while training).

The trainers, each importing only the layers above: ``torch_trainer`` (transformers, TRL
and peft, with its hooks in ``callbacks``) and ``mlx_trainer``. ``runner`` picks one and
imports it when a training runs. Beside them: ``evaluate`` (a trained adapter answering
through the simulation engine) and ``report`` (the paper's Table 2).
"""
