"""Configs: the files load by path with no sys.path edits, one list of dataset names, the checks
of `config_check`, and the op choice (`model.op_impl`) resolved once per run."""
import importlib.util
import os
import subprocess
import sys

import jax
import pytest

from wler_jax import errors

from wler_jax.training import config_check

from wler_jax.data import splits

from wler_jax.model.spec import ModelSpec, OPS, resolve_ops

from wler_jax.training import train
from wler_jax.configs import common

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(path):
    """As ml_collections' config_flags loads `--config=PATH`: a module from a file path."""
    spec = importlib.util.spec_from_file_location("config_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("method", ["wler", "slat"])
def test_config_files_load_by_path_without_touching_sys_path(method):
    before = list(sys.path)
    config = _load(os.path.join(REPO, "configs", f"{method}.py")).get_config("folder,smoke")
    assert sys.path == before
    assert config.method == method and config.data.name == "folder"
    assert config.train.epochs == 2 and config.model.op_impl == "auto"
    assert config == common.base_config(method, "folder,smoke")


def test_config_file_loads_from_another_directory(tmp_path):
    """`--config=/abs/path/configs/wler.py` from any working directory (a fresh process)."""
    script = ("from ml_collections import config_flags; from absl import flags; import sys\n"
              "config_flags.DEFINE_config_file('config')\n"
              f"flags.FLAGS(['x', '--config={REPO}/configs/slat.py:smoke'])\n"
              "assert flags.FLAGS.config.method == 'slat'; print('OK')")
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert "OK" in out.stdout, out.stderr[-3000:]


def test_one_list_of_dataset_names():
    from wler_jax.data.datasets import registry

    assert tuple(registry.BUILDERS) == splits.DATASETS
    assert config_check.CHOICES["data.name"] is splits.DATASETS
    assert common.DATASETS is splits.DATASETS
    for name in splits.DATASETS:
        assert common.parse_arg(name) == (name, "cpu")
    with pytest.raises(ValueError, match="unknown config variant"):
        common.parse_arg("librispeech")


def test_validate_names_every_bad_field():
    config = common.base_config("wler", "smoke")
    config.model.op_impl = "cuda"
    config.model.dropout_rate = 1.0
    config.train.ema_decay = 1.0  # an average that never moves
    with pytest.raises(errors.ConfigError) as e:
        config_check.validate(config)
    assert "model.op_impl='cuda'" in str(e.value) and "model.dropout_rate=1.0" in str(e.value)
    assert "train.ema_decay=1.0" in str(e.value)
    assert isinstance(e.value, ValueError)


class _Device:
    def __init__(self, platform):
        self.platform = platform


def test_op_choice_follows_the_run_devices():
    cpu, gpu = [_Device("cpu")] * 4, [_Device("gpu")] * 2
    assert resolve_ops("auto", cpu) == "cpu"
    assert resolve_ops("auto", gpu) == "xla"
    assert resolve_ops("auto", [_Device("cpu"), _Device("tpu")]) == "xla"
    assert resolve_ops("cpu", gpu) == "cpu" and resolve_ops("xla", cpu) == "xla"
    assert resolve_ops("auto") == ("cpu" if jax.devices()[0].platform == "cpu" else "xla")
    with pytest.raises(ValueError, match="op_impl"):
        resolve_ops("fast", cpu)
    config = common.base_config("wler", "smoke")
    spec = ModelSpec.from_config(config, 3, devices=cpu)
    assert (spec.conv_impl, spec.pool_impl) == OPS["cpu"] == ("matmul_grad_wide", "fused")
    spec = ModelSpec.from_config(config, 3, devices=gpu)
    assert (spec.conv_impl, spec.pool_impl) == ("xla", "xla")
    hash(spec)  # a static jit argument


def test_workdirs_made_before_op_impl_still_resume_and_load():
    """run.json of an older version lacks model.op_impl: the workdir is compatible and its spec
    resolves as "auto"."""
    import ml_collections

    config = common.base_config("wler", "smoke")
    old = config.to_dict()
    del old["model"]["op_impl"]
    assert train._compatible_view(old) == train._compatible_view(config.to_dict())
    config.model.op_impl = "xla"  # a changed op choice does not block a resume either
    assert train._compatible_view(old) == train._compatible_view(config.to_dict())
    spec = ModelSpec.from_config(ml_collections.ConfigDict(old), 3,
                                        devices=[_Device("cpu")])
    assert spec.pool_impl == "fused"


def test_apply_override_casts_to_the_field_type():
    from wler_jax.configs.common import apply_override, base_config

    c = base_config("wler", "smoke")
    for assignment in ("train.epochs=3", "train.learning_rate=0.01", "eval.localisation=false",
                       "model.input_norm=per_band", "data.path=/x/y.csv"):
        apply_override(c, assignment)
    assert (c.train.epochs, c.train.learning_rate, c.eval.localisation) == (3, 0.01, False)
    assert (c.model.input_norm, c.data.path) == ("per_band", "/x/y.csv")
    with pytest.raises(ValueError):
        apply_override(c, "train.epochs=three")
