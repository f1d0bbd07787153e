"""wler_jax: weakly labelled audio event recognition (Kumar & Raj 2017) in JAX/Flax.

Data flow: file -> `audio.load` -> tfds builders (`datasets`) -> `input_pipeline` (bucketed,
padded waveform batches) -> `features.log_mel` on the device -> `models.ModelSpec` (N_W or N_S:
segment logits, masked `pooling`) -> `steps` / `train` / `inference` -> `evaluate` / `predict`.
Command lines: `python -m wler_jax.main` and `python -m wler_jax.predict`; user errors are
`errors.UserError`s.
"""

__version__ = "0.1.1"
