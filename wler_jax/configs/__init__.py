"""Config defaults shared by the config files under the repository's `configs/` (big_vision style).

`configs/wler.py` and `configs/slat.py` are what `--config=` names; both call
`wler_jax.configs.common.base_config(method, arg)`, which holds every field with its comment.
Being part of the package, it imports the same way from a config file, a bench script, a test
or a notebook, with no `sys.path` edits.
"""
