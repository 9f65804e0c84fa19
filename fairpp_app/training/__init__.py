"""Fine-tuning a model toward one persona: SFT, WSFT, DPO and WDPO (paper section 7).

The package splits along what each part needs: ``config`` and ``data`` are plain Python
(the CLI, the TUI and the MLX trainer import them without torch), ``losses`` holds the
weighted-loss arithmetic written so torch and MLX arrays both run it, ``torch_trainer``
is the transformers/TRL/peft trainer, ``callbacks`` turns its hooks into events,
``evaluate`` runs a trained adapter as a respondent, and ``report`` lays the results out
as the paper's Table 2. ``runner`` picks the trainer for a device and is the one entry
point the CLI and the TUI call.
"""
