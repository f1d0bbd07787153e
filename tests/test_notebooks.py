"""The Colab notebooks run end to end on a CPU with their small setting.

colab/train_wler.ipynb trains the smoke size for one epoch; colab/predict_wler.ipynb then loads
that workdir, writes and scores its demo recording (no Colab upload here), plots, runs the
command line and calls `predict_fn` under jit/vmap. Parameters are injected papermill-style:
assignments appended to the cell tagged "parameters" (its defaults are for Colab).

Only for speed, training also gets `input.bucket_ratio=4` and `input.max_frames=128` (fewer
compiled shapes: one training shape instead of five); everything else is the notebooks' code.
"""
from __future__ import annotations

import copy
import json
import os
import re

import nbformat
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_NB = os.path.join(REPO, "colab", "train_wler.ipynb")
PREDICT_NB = os.path.join(REPO, "colab", "predict_wler.ipynb")
CELL_TIMEOUT_S = 600


def _read(path: str):
    return nbformat.read(path, as_version=4)


def _parameter_cells(nb) -> list:
    return [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]


def _with_parameters(nb, params: dict):
    """A copy of `nb` whose parameter cell ends with `params` assigned (papermill's way)."""
    nb = copy.deepcopy(nb)
    cell, = _parameter_cells(nb)
    assigned = set(re.findall(r"^([A-Z_][A-Z0-9_]*)\s*=", cell.source, re.M))
    unknown = set(params) - assigned
    assert not unknown, f"parameters {sorted(unknown)} are not defined in the parameter cell"
    cell.source += "\n\n# Injected by tests/test_notebooks.py\n" + "".join(
        f"{k} = {v!r}\n" for k, v in params.items())
    return nb


@pytest.fixture(scope="module")
def kernel_name(tmp_path_factory) -> str:
    """The python3 kernel, run by this interpreter (jupyter_client swaps a spec's `python`
    for sys.executable); installed into a temporary prefix if no spec is found."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        from ipykernel import kernelspec

        prefix = tmp_path_factory.mktemp("kernels")
        kernelspec.install(kernel_name="python3", prefix=str(prefix))
        os.environ["JUPYTER_PATH"] = os.pathsep.join(
            [str(prefix / "share" / "jupyter"), os.environ.get("JUPYTER_PATH", "")])
        KernelSpecManager().get_kernel_spec("python3")
    return "python3"


@pytest.fixture(scope="module")
def shared(shared_runs) -> dict:
    """Built datasets and JAX's persistent compilation cache, shared with the other end-to-end
    tests of the session (conftest.py: the same smoke programs are compiled once)."""
    return shared_runs


def _execute(nb, cwd: str, kernel: str, env: dict):
    """Runs every cell in a fresh kernel with `cwd` as working directory."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    client = NotebookClient(nb, kernel_name=kernel, timeout=CELL_TIMEOUT_S,
                            resources={"metadata": {"path": cwd}})
    try:
        client.execute(env={**os.environ, **env})
    except CellExecutionError as e:
        pytest.fail(f"notebook cell failed:\n{str(e)[-4000:]}")
    return nb


def _text(nb) -> str:
    """All stream and text/plain outputs of an executed notebook."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", "") if out.output_type == "stream"
                         else out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def _images(nb) -> int:
    return sum("image/png" in out.get("data", {}) for cell in nb.cells
               for out in cell.get("outputs", []))


def _tensorboard_installed() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def trained(tmp_path_factory, kernel_name, shared):
    """The train notebook executed with the smoke size for one epoch."""
    tmp = tmp_path_factory.mktemp("train_nb")
    paths = {"workdir": str(tmp / "workdir"), "data_dir": shared["data_dir"],
             "saved": str(tmp / "saved")}
    nb = _with_parameters(_read(TRAIN_NB), {
        "VARIANT": "smoke", "EPOCHS": 1, "WORKDIR": paths["workdir"],
        "DATA_DIR": paths["data_dir"], "SAVE_DIR": paths["saved"], "INSTALL": False,
        "REPO_DIR": REPO, "OVERRIDES": {"input.bucket_ratio": 4.0, "input.max_frames": 128},
        # With TensorBoard absent the guard is exercised; never start a server in a test.
        "SHOW_TENSORBOARD": not _tensorboard_installed()})
    return _execute(nb, str(tmp), kernel_name, shared["env"]), paths


@pytest.mark.parametrize("path", [TRAIN_NB, PREDICT_NB], ids=["train", "predict"])
def test_notebook_is_clean_with_one_parameter_cell(path):
    nb = _read(path)
    nbformat.validate(nb)
    cells = _parameter_cells(nb)
    assert len(cells) == 1 and cells[0].cell_type == "code"
    assert "INSTALL = True" in cells[0].source  # Colab defaults; tests inject their own
    assert "CPU" in cells[0].source  # says which small setting runs on a CPU
    for cell in nb.cells:  # committed without outputs
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None


@pytest.mark.slow
def test_train_notebook_trains_evaluates_and_saves(trained):
    nb, paths = trained
    text = _text(nb)
    with open(os.path.join(paths["workdir"], "results.json")) as f:
        results = json.load(f)
    assert results["method"] == "wler" and results["best_epoch"] == 1
    for split in ("validation", "test"):
        assert 0.0 <= results[split]["mAP"] <= 1.0
    assert "device(s): the train step shards" in text
    assert "Event Name" in text and "mAP" in text  # the paper-style table
    assert "trained and evaluated in" in text
    assert os.listdir(os.path.join(paths["workdir"], "tensorboard"))
    assert os.path.exists(os.path.join(paths["workdir"], "validation_map.png"))
    assert _images(nb) >= 1
    saved = paths["saved"]
    assert os.path.exists(os.path.join(saved, "results.json"))
    assert os.path.isdir(os.path.join(saved, "checkpoints"))


@pytest.mark.slow
def test_predict_notebook_tags_localises_plots_and_runs_the_cli(trained, tmp_path, kernel_name,
                                                                shared):
    _, paths = trained
    out_dir = str(tmp_path / "predictions")
    nb = _with_parameters(_read(PREDICT_NB), {
        "WORKDIR": paths["workdir"], "AUDIO_FILES": [], "OUTPUT_DIR": out_dir,
        "DEMO_SECONDS": 8.0, "INSTALL": False, "REPO_DIR": REPO})
    text = _text(_execute(nb, str(tmp_path), kernel_name, shared["env"]))

    demo = os.path.join(out_dir, "demo.wav")
    assert os.path.exists(demo)  # no Colab here: the demo recording was written and scored
    assert "true event" in text
    with open(os.path.join(out_dir, "predictions.json")) as f:
        cli = json.load(f)
    assert [r["file"] for r in cli["results"]] == [demo] and cli["failed"] == []
    record = cli["results"][0]
    assert len(record["scores"]) == 10 and record["segment_scores"]
    assert "same scores as above: True" in text
    with open(os.path.join(out_dir, "events.tsv")) as f:
        assert f.readline() == "filename\tonset\toffset\tevent_label\n"
    assert os.path.exists(os.path.join(out_dir, "plots", "demo.wav.png"))
    assert [p for p in os.listdir(os.path.join(out_dir, "cli_plots")) if p.endswith(".png")]
    assert "vmap == batch: True" in text
    assert "strongest segment starts at" in text
    # Section 8: embeddings of the same batch, and the fine-tuning command (run only with data).
    assert "clip_mean" in text and "segment embeddings over" in text
    assert "--config.train.init_from=" + paths["workdir"] in text
