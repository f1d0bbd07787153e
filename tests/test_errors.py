"""User errors end in one line and exit code 2 in both command lines; bugs keep their traceback.

The `wler_jax.main` cases run as real programs (absl flags, config loading, no traceback), all
started at once so that their start-up overlaps; the predict cases run in this process.
"""
import os
import subprocess
import sys

import pytest
import soundfile as sf

from wler_jax import errors, predict
from conftest import tones_and_noise
from test_predict import make_workdir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _folder(tmp, name):
    path = os.path.join(tmp, name)
    os.makedirs(path, exist_ok=True)
    return path


def _bad_split_csv(tmp):
    folder = _folder(tmp, "csv")
    sf.write(os.path.join(folder, "a.wav"), tones_and_noise(44100), 44100)
    with open(os.path.join(folder, "list.csv"), "w") as f:
        f.write("path,labels,split\na.wav,dog,holdout\n")
    return os.path.join(folder, "list.csv")


def _a_file(tmp):
    path = os.path.join(tmp, "not_a_dir")
    open(path, "w").close()
    return path


# name -> (config, extra args (a callable of the tmp folder gives a path), expected message)
MAIN_CASES = {
    "unknown_field": ("wler.py:smoke", ["--config.model.widht=0.5"], "unknown config field"),
    "bad_choice": ("wler.py:smoke", ["--config.model.pooling=median"], "model.pooling='median'"),
    "not_positive": ("wler.py:smoke", ["--config.train.epochs=0"], "train.epochs=0"),
    "bad_type": ("wler.py:smoke", ["--config.train.epochs=1.5"], "--config.train.epochs=1.5"),
    "bad_op_impl": ("wler.py:smoke", ["--config.model.op_impl=gpu"], "model.op_impl='gpu'"),
    "missing_data_path": ("wler.py:folder,smoke", [], "data.path is required"),
    "unreadable_data_path": ("wler.py:folder,smoke",
                             [lambda t: "--config.data.path=" + os.path.join(t, "nowhere")],
                             "does not exist"),
    "no_audio_files": ("slat.py:folder,smoke",
                       [lambda t: "--config.data.path=" + _folder(t, "empty")],
                       "no audio files found"),
    "bad_split_column": ("wler.py:folder,smoke",
                         [lambda t: "--config.data.path=" + _bad_split_csv(t)],
                         "unknown split 'holdout'"),
}


@pytest.fixture(scope="module")
def main_runs(tmp_path_factory):
    """name -> (CompletedProcess-like (returncode, stdout, stderr), tmp folder) of every case."""
    procs = {}
    for name, (config, extra, _) in MAIN_CASES.items():
        tmp = str(tmp_path_factory.mktemp(name))
        args = [a(tmp) if callable(a) else a for a in extra]
        cmd = [sys.executable, "-m", "wler_jax.main", f"--config=configs/{config}",
               f"--workdir={os.path.join(tmp, 'w')}",
               f"--config.data.data_dir={os.path.join(tmp, 'd')}", *args]
        procs[name] = (subprocess.Popen(cmd, cwd=REPO, env=dict(os.environ, JAX_PLATFORMS="cpu"),
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True), tmp)
    out = {}
    for name, (proc, tmp) in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        out[name] = (proc.returncode, stdout, stderr, tmp)
    return out


def _error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("error: ")]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MAIN_CASES))
def test_main_user_errors_are_one_line(main_runs, name):
    returncode, _, stderr, tmp = main_runs[name]
    assert returncode == errors.EXIT_USER_ERROR, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    line, = _error_lines(stderr)
    assert MAIN_CASES[name][2] in line, stderr[-3000:]
    if name in ("unknown_field", "bad_choice", "not_positive", "bad_type", "bad_op_impl",
                "missing_data_path"):  # stopped before any work
        assert not os.path.exists(os.path.join(tmp, "w"))
        assert not os.path.exists(os.path.join(tmp, "d"))


def test_main_workdir_that_is_a_file(tmp_path):
    """Checked in-process: the same `errors.UserError` the command line turns into one line."""
    from wler_jax.training import train
    from wler_jax.configs.common import base_config

    path = tmp_path / "file"
    path.write_text("")
    with pytest.raises(errors.NotAWorkdirError, match="is a file"):
        train.train_and_evaluate(base_config("wler", "smoke"), str(path))


def test_predict_not_a_workdir(tmp_path, capsys):
    wav = tmp_path / "a.wav"
    sf.write(wav, tones_and_noise(44100), 44100)
    with pytest.raises(SystemExit) as e:
        predict.cli(["predict", f"--workdir={tmp_path / 'nothing'}", str(wav)])
    assert e.value.code == errors.EXIT_USER_ERROR
    err = capsys.readouterr().err
    line, = _error_lines(err)
    assert "not a wler_jax workdir" in line and "Traceback" not in err


def test_predict_no_audio_files(tmp_path, capsys):
    workdir = make_workdir(tmp_path / "workdir")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not audio")
    with pytest.raises(SystemExit) as e:
        predict.cli(["predict", f"--workdir={workdir}", f"--output={tmp_path / 'o.json'}",
                     str(empty)])
    assert e.value.code == errors.EXIT_USER_ERROR
    line, = _error_lines(capsys.readouterr().err)
    assert "no audio files found" in line and str(empty) in line


def test_unexpected_errors_keep_their_traceback():
    with pytest.raises(RuntimeError):
        with errors.report_user_errors():
            raise RuntimeError("a bug")
    with pytest.raises(SystemExit):
        with errors.report_user_errors():
            raise errors.DataError("bad data; fix it")


def test_user_errors_are_the_builtin_exceptions_callers_catch():
    assert issubclass(errors.NotAWorkdirError, FileNotFoundError)
    assert issubclass(errors.IncompatibleWorkdirError, ValueError)
    from wler_jax.data.datasets import common
    assert issubclass(common.ManualDataError, (errors.UserError, FileNotFoundError))
    assert issubclass(common.EmptySplitError, (errors.UserError, ValueError))
