"""Recipes as files: every configs/experiments/*.py loads for both methods and passes the config
checks, and the map from existing result JSONs to their recipe files points at real files."""
import glob
import importlib.util
import json
import os

import pytest

from wler_jax.configs import common, recipes
from wler_jax.model import spec
from wler_jax.training import config_check

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = sorted(p for p in glob.glob(os.path.join(REPO, "configs", "experiments", "*.py"))
               if not p.endswith("__init__.py"))


def _results_map() -> dict:
    path = os.path.join(REPO, "configs", "experiments", "__init__.py")
    module_spec = importlib.util.spec_from_file_location("experiments_index", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.RESULTS


def _checked(config):
    if config.data.name == "folder" and not config.data.path:  # a bench script sets it per build
        config.data.path = "/nonexistent/clips.csv"
    config_check.validate(config)
    return config


def test_there_are_recipe_files():
    assert len(FILES) >= 5
    assert {os.path.basename(p) for p in FILES} >= {"real_office.py", "synthetic_cpu.py"}


@pytest.mark.parametrize("path", FILES, ids=os.path.basename)
@pytest.mark.parametrize("method", ["wler", "slat"])
def test_recipe_loads_and_validates(path, method):
    config = _checked(recipes.load(f"{path}:{method}"))
    assert config.method == method
    default = recipes.load(path)  # no argument: WLER at the file's own size
    assert default.method == "wler"
    _checked(default)
    smoke = _checked(recipes.load(f"{path}:{method},smoke"))
    assert smoke.train.epochs == 2  # the smoke preset: tests and quick checks of the recipe
    with open(path) as f:
        text = f.read()
    assert text.startswith('"""') and "Produced" in text, "say which results it produced"


def test_recipe_argument():
    assert recipes.METHODS == spec.METHODS
    assert recipes.recipe_arg(None, "folder") == ("wler", "folder", "cpu")
    assert recipes.recipe_arg("smoke,slat", "folder") == ("slat", "folder", "smoke")
    assert recipes.recipe_arg("wler,synthetic,full", "folder") == ("wler", "synthetic", "full")
    with pytest.raises(ValueError, match="unknown recipe argument"):
        recipes.recipe_arg("wler,tiny")
    assert recipes.split_spec("a/b.py:slat,smoke") == ("a/b.py", "slat,smoke")
    assert recipes.split_spec("a/b.py") == ("a/b.py", None)
    assert recipes.join_spec("a/b.py", "wler", None, "") == "a/b.py:wler"
    assert recipes.join_spec("a/b.py") == "a/b.py"


def test_real_office_is_the_preset_at_width_025_and_36_epochs():
    path = os.path.join(REPO, "configs", "experiments", "real_office.py")
    for method in ("wler", "slat"):
        recipe = recipes.load(f"{path}:{method}")
        preset = common.base_config(method, "folder,cpu")
        assert recipes.differences(recipe, preset) == {"model.width": 0.25}
        assert recipe.train.epochs == 36
        assert recipes.differences(recipes.load(f"{path}:{method},full"),
                                   common.base_config(method, "folder,full")) == {}
    assert [recipes.as_override(k, v) for k, v in (("model.width", 0.25), ("train.epochs", 36),
                                                   ("train.learning_rate", 0.002))] == [
        "model.width=0.25", "train.epochs=36", "train.learning_rate=0.002"]


def test_results_map_names_existing_results_and_recipe_files():
    results = _results_map()
    assert results
    for name, spec_ in results.items():
        result = os.path.join(REPO, "bench", "results", name)
        assert os.path.isfile(result), name
        path, arg = recipes.split_spec(spec_)
        assert os.path.join(REPO, path) in FILES, spec_
        with open(os.path.join(REPO, path)) as f:
            assert name in f.read(), f"{path}'s docstring should name {name}"
        with open(result) as f:
            runs = json.load(f).get("runs") or []
        methods = {r["method"] for r in runs if isinstance(r, dict) and "method" in r}
        for method in methods or {"wler"}:
            config = recipes.load(os.path.join(REPO, path) + ":" + arg.format(method=method))
            _checked(config)
