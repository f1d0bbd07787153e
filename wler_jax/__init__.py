"""wler_jax: weakly labelled audio event recognition (Kumar & Raj 2017) in JAX/Flax.

Data flow: file -> `audio.load` -> tfds builders (`datasets`) -> `input_pipeline` (bucketed,
padded, masked waveform batches) -> `features.log_mel` on the device -> `models.WLER`
(segment logits, masked pooling) -> `train` / `evaluate` / `predict`.
"""

__version__ = "0.1.1"
