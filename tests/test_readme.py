"""Every command in README.md's ```bash blocks runs, on the smoke size.

The commands are read from the README at collection time (the README may gain commands of the
same kinds), run as subprocesses in README order in a scratch folder (the working directory,
so relative outputs such as `workdirs/wler` or `pred.json` land there), and their outputs are
checked. Substitutions, all of them here:

* `python` is this interpreter; the repository is put on PYTHONPATH (so `python -m bench.<name>`
  imports the repository's bench package from the scratch folder); `configs/...` paths are made
  absolute.
* `python -m wler_jax.main`: the size variant (`cpu`, `full`, none) becomes `smoke`, the dataset
  variant stays (`configs/wler.py:folder,full` -> `configs/wler.py:folder,smoke`). For speed
  only: `--config.train.epochs=1`, `--config.input.max_frames=128` (one compiled training
  shape), `--config.input.bucket_ratio=4` (fewer evaluation shapes), and one shared
  `--config.data.data_dir`. `--config.data.path` becomes a fixture of real audio files written
  with soundfile (tests/corpus_fixtures.py): a CSV `path,labels,split` when the README's path
  ends in `.csv`, else a folder with one sub-folder per label; a dataset that needs
  `--config.data.manual_dir` gets that corpus's fixture tree. An absolute `--workdir` is moved
  under the scratch folder; without one, main's default `workdirs/<method>_<dataset>` is used.
  Commands identical after these substitutions except for the workdir are run once; the other
  workdir names are symlinks to the run's workdir (so `--config=configs/wler.py:full` trains
  nothing new: it is the smoke run again).
* `--config.train.init_from=W` (fine-tuning): a `W` that no earlier README command trained is a
  symlink to a smoke WLER run (trained first if there is none); an absolute `W` is moved under
  the scratch folder.
* `python -m wler_jax.predict` and `python -m wler_jax.embed`: input files and folders named in
  the README are written as real audio (a predict folder gets two files, one in a sub-folder);
  absolute paths are moved under the scratch folder. A `--workdir` that no earlier README
  command trained is a symlink to a smoke WLER run (trained first if there is none).
* `python -m bench.compare_wler_slat` (trains SLAT and WLER): `--variant=<dataset,>smoke`,
  `--epochs=1`, the same speed overrides, `--workdir` and `--json` in the scratch folder. Its
  two runs resume the README's own `configs/{slat,wler}.py` smoke runs when there are some
  (already trained: only evaluation is left), else train.
* `python -m bench.padding_waste` runs as written (`--json` in the scratch folder); it takes a
  second. `python -m bench.run_all` runs with `--only padding_waste` and its results in the
  scratch folder. The other benchmarks take minutes and are checked with `--help`: every
  `--flag` the README gives them must be one of theirs. A benchmark written as a script path
  (`python bench/<name>.py`) fails this test: the README writes them as modules.
* `pip install ...` and `python -m pytest ...` are not run (the two set-up commands must appear
  verbatim; see `test_setup_commands_are_verbatim`); `tensorboard ...` (a server) is not run.
  Any other command fails this test until a rule for it is added here.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import subprocess
import sys
import warnings

import pytest

import corpus_fixtures
from conftest import tones_and_noise

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, "README.md")
SETUP_COMMANDS = ('pip install -e . && python -m wler_jax.main --config=configs/wler.py',
                  'pip install -e ".[test]" && python -m pytest tests -q')
SIZES = ("smoke", "cpu", "full")
# Speed only (see the module docstring); each replaces the README's value of the same field.
MAIN_OVERRIDES = {"train.epochs": "1", "input.max_frames": "128", "input.bucket_ratio": "4.0"}
CORPUS_FIXTURES = {"urbansound": corpus_fixtures.make_urbansound,
                   "urbansound8k": corpus_fixtures.make_urbansound8k,
                   "esc50": corpus_fixtures.make_esc50}
TIMEOUT_S = 600


# ------------------------------------------------------------------------- reading README


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"^```(?:bash|sh|shell)[ \t]*\n(.*?)^```", text, re.M | re.S)


def readme_commands(text: str) -> list[list[str]]:
    """Each simple command (split at `&&` and `;`) of every bash block, as argv lists."""
    commands = []
    for block in bash_blocks(text):
        for line in block.replace("\\\n", " ").splitlines():
            tokens = shlex.split(line, comments=True)
            command: list[str] = []
            for token in tokens + ["&&"]:
                if token in ("&&", ";"):
                    if command:
                        commands.append(command)
                    command = []
                else:
                    command.append(token)
    return commands


def _read_readme() -> str:
    with open(README, encoding="utf-8") as f:
        return f.read()


def _kind(argv: list[str]) -> str:
    args = [a for a in argv if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", a)]  # VAR=value prefix
    if not args:
        return "unknown"
    if args[0] in ("pip", "pip3") or args[1:3] == ["-m", "pip"]:
        return "pip"
    if args[0] == "tensorboard":
        return "tensorboard"
    if args[0] in ("python", "python3") and len(args) > 1:
        if args[1:3] == ["-m", "pytest"]:
            return "pytest"
        if args[1:3] == ["-m", "wler_jax.main"]:
            return "main"
        if args[1:3] == ["-m", "wler_jax.predict"]:
            return "predict"
        if args[1:3] == ["-m", "wler_jax.embed"]:
            return "embed"
        if len(args) > 2 and args[1] == "-m" and re.fullmatch(r"bench\.\w+", args[2]):
            return "bench"
    return "unknown"


COMMANDS = readme_commands(_read_readme())


def _command_id(argv: list[str]) -> str:
    text = " ".join(argv).replace("python -m ", "")
    return re.sub(r"[^\w:.,=/-]+", "_", text)[:70]


# ---------------------------------------------------------------------------- sandbox


@dataclasses.dataclass
class Sandbox:
    """The scratch folder the README's commands run in, and what they have made so far."""

    root: str
    data_dir: str
    trained: dict = dataclasses.field(default_factory=dict)  # run key -> workdir (absolute)
    default_wler: str | None = None  # a smoke WLER workdir for predict commands
    env: dict = dataclasses.field(default_factory=dict)  # for every subprocess

    def path(self, p: str) -> str:
        """A README path as used here: relative paths stay relative to the sandbox (the cwd),
        absolute ones are moved under it."""
        return os.path.join(self.root, "abs", p.lstrip("/")) if os.path.isabs(p) else p

    def abs(self, p: str) -> str:
        return os.path.normpath(os.path.join(self.root, self.path(p)))


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory, shared_runs) -> Sandbox:
    root = tmp_path_factory.mktemp("readme")
    # Built data and compiled programs are shared with the session's other end-to-end tests.
    return Sandbox(root=str(root / "run"), data_dir=shared_runs["data_dir"],
                   env={k: v for k, v in shared_runs["env"].items() if k != "JAX_PLATFORMS"})


def run(sb: Sandbox, argv: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    """Runs argv (argv[0] == 'python') in the sandbox with the repository importable."""
    os.makedirs(sb.root, exist_ok=True)
    full_env = dict(os.environ, **sb.env, **(env or {}))
    full_env["PYTHONPATH"] = os.pathsep.join(
        [REPO] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    full_env.setdefault("JAX_PLATFORMS", "cpu")
    proc = subprocess.run([sys.executable] + argv[1:], cwd=sb.root, env=full_env,
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    if proc.returncode != 0:
        pytest.fail(f"exit code {proc.returncode}: {shlex.join(argv)}\n--- stdout\n"
                    f"{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-5000:]}")
    return proc


def _split_env(argv: list[str]) -> tuple[dict, list[str]]:
    env = {}
    while argv and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", argv[0]):
        key, value = argv[0].split("=", 1)
        env[key] = value
        argv = argv[1:]
    return env, argv


def _flags(args: list[str], boolean=lambda name: False) -> tuple[list[tuple[str, str]], list[str]]:
    """(--name, value) pairs and positional arguments; `--name value` is accepted too."""
    flags, positional, i = [], [], 0
    while i < len(args):
        a = args[i]
        if a.startswith("--") and "=" in a:
            flags.append(tuple(a.split("=", 1)))
        elif a.startswith("--") and not boolean(a[2:]) and i + 1 < len(args) \
                and not args[i + 1].startswith("-"):
            flags.append((a, args[i + 1]))
            i += 1
        elif a.startswith("--"):
            flags.append((a, None))
        else:
            positional.append(a)
        i += 1
    return flags, positional


def _symlink(target: str, link: str) -> None:
    link = os.path.normpath(link)
    if os.path.abspath(target) == os.path.abspath(link) or os.path.lexists(link):
        return
    os.makedirs(os.path.dirname(link), exist_ok=True)
    os.symlink(os.path.abspath(target), link)


# ------------------------------------------------------------------------ wler_jax.main


def _main_key(config_file: str, variants: list[str], overrides: dict, extra=(),
              env: dict | None = None) -> tuple:
    """What makes two training runs the same (the README's values, before substitutions)."""
    replaced = set(MAIN_OVERRIDES) | {"data.data_dir"}
    return ("main", os.path.normpath(config_file), tuple(variants),
            tuple(sorted((k, v) for k, v in overrides.items() if k not in replaced)),
            tuple(extra), tuple(sorted((env or {}).items())))


def _dataset_fixtures(sb: Sandbox, dataset: str, overrides: dict) -> dict:
    """Config fields pointing a dataset at fixture files instead of the README's paths."""
    if dataset == "folder":
        return {"data.path": _data_path_fixture(sb, overrides.get("data.path", "my_sounds"))}
    if dataset in CORPUS_FIXTURES:
        return {"data.manual_dir": _corpus_fixture(sb, dataset)}
    if dataset != "synthetic":
        pytest.fail(f"no fixture for the {dataset!r} dataset: add one to tests/test_readme.py "
                    "(audioset has only a test split and cannot be trained on)")
    return {}


def _normalise_main(sb: Sandbox, args: list[str], env: dict) -> tuple[tuple, list[str], str]:
    """(run key, argv after the substitutions, workdir) of a `wler_jax.main` command."""
    flags, positional = _flags(args)
    assert not positional, f"unexpected arguments {positional}"
    config_file, variants, workdir, overrides, extra = None, [], None, {}, []
    for name, value in flags:
        if name == "--config":
            config_file, _, arg = value.partition(":")
            variants = [v for v in arg.split(",") if v and v not in SIZES]
        elif name == "--workdir":
            workdir = value
        elif name.startswith("--config."):
            overrides[name[len("--config."):]] = value
        else:
            extra.append(f"{name}={value}" if value is not None else name)
    assert config_file, "no --config"
    method = os.path.splitext(os.path.basename(config_file))[0]
    dataset = variants[0] if variants else "synthetic"
    workdir = sb.path(workdir) if workdir else os.path.join("workdirs", f"{method}_{dataset}")
    settings = {**overrides, **_dataset_fixtures(sb, dataset, overrides), **MAIN_OVERRIDES,
                "data.data_dir": sb.data_dir}
    argv = ["python", "-m", "wler_jax.main",
            f"--config={os.path.join(REPO, config_file)}:{','.join(variants + ['smoke'])}",
            f"--workdir={workdir}", *extra, *(f"--config.{k}={v}" for k, v in settings.items())]
    return _main_key(config_file, variants, overrides, extra, env), argv, workdir


def _data_path_fixture(sb: Sandbox, readme_path: str) -> str:
    root = os.path.join(sb.root, "fixtures", re.sub(r"\W+", "_", readme_path).strip("_"))
    if readme_path.lower().endswith(".csv"):
        csv_path = os.path.join(root, "meta", "list.csv")
        if not os.path.exists(csv_path):
            corpus_fixtures.make_label_csv(root)
        return csv_path
    if not os.path.isdir(root):
        corpus_fixtures.make_label_folders(root)
    return root


def _corpus_fixture(sb: Sandbox, dataset: str) -> str:
    root = os.path.join(sb.root, "fixtures", "manual", dataset)
    if not os.path.isdir(root):
        CORPUS_FIXTURES[dataset](root)
    return root


def _check_trained(sb: Sandbox, workdir: str) -> None:
    with open(os.path.join(sb.abs(workdir), "results.json")) as f:
        results = json.load(f)
    assert "validation" in results and "mAP" in results["validation"], results.keys()
    assert results["best_epoch"] == 1


def run_main(sb: Sandbox, args: list[str], env: dict) -> None:
    # Fine-tuning: a source workdir no README command trained is the smoke WLER run.
    prefix = "--config.train.init_from="
    args = [prefix + sb.path(a[len(prefix):]) if a.startswith(prefix) else a for a in args]
    for a in args:
        if a.startswith(prefix) and not os.path.isdir(sb.abs(a[len(prefix):])):
            _symlink(default_wler_workdir(sb), sb.abs(a[len(prefix):]))
    key, argv, workdir = _normalise_main(sb, args, env)
    if key in sb.trained:  # the same run up to its workdir: already done
        _symlink(sb.trained[key], sb.abs(workdir))
    else:
        if os.path.lexists(sb.abs(workdir)):  # main would refuse it (another config's workdir)
            warnings.warn(f"README: `{shlex.join(args)}` uses the workdir {workdir} of an "
                          "earlier README command with another config; main refuses that "
                          "(give it its own --workdir). Run here in a fresh workdir.")
            fresh = f"{workdir.rstrip('/')}_{len(sb.trained)}"
            argv = [f"--workdir={fresh}" if a == f"--workdir={workdir}" else a for a in argv]
            workdir = fresh
        proc = run(sb, argv, env)
        assert "Event Name" in proc.stdout and "mAP" in proc.stdout  # the results table
        sb.trained[key] = sb.abs(workdir)
    _check_trained(sb, workdir)
    if key == _main_key("configs/wler.py", [], {}):
        sb.default_wler = sb.trained[key]


def default_wler_workdir(sb: Sandbox) -> str:
    if sb.default_wler is None:
        run_main(sb, ["--config=configs/wler.py", "--workdir=workdirs/default_wler"], {})
    return sb.default_wler


# --------------------------------------------------------------------- wler_jax.predict


def _write_recording(path: str, seconds: float, seed: int) -> None:
    import soundfile as sf

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    sf.write(path, tones_and_noise(int(seconds * 44100), seed=seed), 44100)


def run_predict(sb: Sandbox, args: list[str], env: dict) -> None:
    from absl import flags as absl_flags
    from wler_jax import predict
    from wler_jax.predict import __main__ as predict_entry  # noqa: F401  (defines its flags)

    def boolean(name):  # --progress / --noprogress take no value
        if name not in absl_flags.FLAGS and name.startswith("no"):
            name = name[2:]
        return name in absl_flags.FLAGS and absl_flags.FLAGS[name].boolean

    flags, inputs = _flags(args, boolean)
    assert inputs, "the README's predict command names no audio"
    values = dict(flags)
    workdir = values.get("--workdir")
    assert workdir, "no --workdir"
    if not os.path.isdir(sb.abs(workdir)):
        _symlink(default_wler_workdir(sb), sb.abs(workdir))
    expected = 0
    new_inputs = []
    for i, item in enumerate(inputs):
        path = sb.abs(item)
        new_inputs.append(sb.path(item))
        if os.path.exists(path):
            continue
        if item.endswith("/") or os.path.splitext(item)[1].lower() not in predict.AUDIO_EXTENSIONS:
            _write_recording(os.path.join(path, "street.wav"), 3.0, seed=10 + i)
            _write_recording(os.path.join(path, "park", "birds.flac"), 2.0, seed=20 + i)
        else:
            _write_recording(path, 4.0, seed=30 + i)
    for item in new_inputs:
        path = sb.abs(item)
        expected += len(predict.find_audio_files([path]))
    outputs = {name: sb.path(value) for name, value in flags
               if name in ("--output", "--events_tsv", "--plot") and value}
    other = [f"{n}={v}" if v is not None else n for n, v in flags
             if n not in outputs and n != "--workdir"]
    argv = ["python", "-m", "wler_jax.predict", f"--workdir={sb.path(workdir)}", *new_inputs,
            *(f"{n}={v}" for n, v in outputs.items()), *other]
    run(sb, argv, env)

    output = sb.abs(outputs.get("--output", "predictions.json"))
    if output.endswith(".csv"):
        with open(output) as f:
            assert f.readline().startswith("file,level,label,start,end,score")
    else:
        with open(output) as f:
            result = json.load(f)
        assert len(result["results"]) == expected and result["failed"] == []
        assert all(r["segment_scores"] for r in result["results"])
    if "--events_tsv" in outputs:
        with open(sb.abs(outputs["--events_tsv"])) as f:
            assert f.readline() == "filename\tonset\toffset\tevent_label\n"
    if "--plot" in outputs:
        pngs = [p for p in os.listdir(sb.abs(outputs["--plot"])) if p.endswith(".png")]
        assert len(pngs) == expected


def run_embed(sb: Sandbox, args: list[str], env: dict) -> None:
    """As predict: a --workdir no README command trained is the smoke WLER run, inputs are
    written as real audio; the .npz must hold one clip embedding per file."""
    import numpy as np

    flags, inputs = _flags(args, lambda name: name in ("segments", "nosegments", "progress",
                                                       "noprogress"))
    assert inputs, "the README's embed command names no audio"
    values = dict(flags)
    workdir = values.get("--workdir")
    assert workdir, "no --workdir"
    if not os.path.isdir(sb.abs(workdir)):
        _symlink(default_wler_workdir(sb), sb.abs(workdir))
    new_inputs = [sb.path(item) for item in inputs]
    for i, item in enumerate(inputs):
        path = sb.abs(item)
        if os.path.exists(path):
            continue
        if os.path.splitext(item)[1] == "":
            _write_recording(os.path.join(path, "street.wav"), 3.0, seed=40 + i)
        else:
            _write_recording(path, 4.0, seed=50 + i)
    output = sb.path(values.get("--output") or "embeddings.npz")
    other = [f"{n}={v}" if v is not None else n for n, v in flags
             if n not in ("--output", "--workdir")]
    run(sb, ["python", "-m", "wler_jax.embed", f"--workdir={sb.path(workdir)}", *new_inputs,
             f"--output={output}", *other], env)
    if output.endswith(".npz"):
        z = np.load(sb.abs(output))
        assert len(z["files"]) == z["clip"].shape[0] > 0 and len(z["failed_files"]) == 0
        if "--segments" in values:
            assert z["segments"].shape[1] == z["clip"].shape[1]


# -------------------------------------------------------------------------------- bench


def _drop_flags(tokens: list[str], names: tuple[str, ...]) -> list[str]:
    """`tokens` without `--name=v` / `--name v [v ...]` for the given names."""
    out, dropping = [], False
    for t in tokens:
        if t.startswith("-"):
            dropping = t.split("=", 1)[0] in names and "=" not in t
            if t.split("=", 1)[0] in names:
                continue
        elif dropping:
            continue
        out.append(t)
    return out


def _run_compare(sb: Sandbox, module: str, rest: list[str], env: dict) -> None:
    """Trains SLAT and WLER (resuming the README's own smoke runs of them when there are some)."""
    flags, _ = _flags(rest)
    values = dict(flags)
    variants = [v for v in (values.get("--variant") or "").split(",") if v and v not in SIZES]
    variant = ",".join(variants + ["smoke"])
    overrides = dict(v.split("=", 1) for n, v in flags if n == "--override")
    settings = {**overrides, **_dataset_fixtures(sb, variants[0] if variants else "synthetic",
                                                 overrides),
                **{k: v for k, v in MAIN_OVERRIDES.items() if k != "train.epochs"},
                "data.data_dir": sb.data_dir}
    workdir, out = os.path.join(sb.root, "compare"), os.path.join(sb.root, "compare.json")
    tag = variant.replace(",", "_")
    for method in ("slat", "wler"):  # its workdirs are <workdir>/<variant tag>/<method>_seed<k>
        key = _main_key(f"configs/{method}.py", variants, overrides, env=env)
        if key in sb.trained:
            _symlink(sb.trained[key], os.path.join(workdir, tag, f"{method}_seed0"))
    kept = _drop_flags(rest, ("--variant", "--epochs", "--override", "--workdir", "--json",
                              "--seeds", "--resume"))
    argv = ["python", "-m", module, *kept, f"--variant={variant}", "--epochs=1", "--seeds=1",
            "--resume", *(f"--override={k}={v}" for k, v in settings.items()),
            f"--workdir={workdir}", f"--json={out}"]
    proc = run(sb, argv, env)
    with open(out) as f:
        result = json.load(f)
    assert {r["method"] for r in result["runs"]} == {"slat", "wler"}
    assert all(0.0 <= r["test_mAP"] <= 1.0 and len(r["test_mAP_ci95"]) == 2
               for r in result["runs"])
    assert set(result["summary"]) >= {"slat", "wler", "wler_minus_slat_test"}
    assert "WLER - SLAT test mAP (paired)" in proc.stdout


def _run_padding_waste(sb: Sandbox, module: str, rest: list[str], env: dict) -> None:
    out = os.path.join(sb.root, "padding_waste.json")
    run(sb, ["python", "-m", module, *_drop_flags(rest, ("--json",)), f"--json={out}"], env)
    with open(out) as f:
        assert json.load(f)["results"]


def _run_run_all(sb: Sandbox, module: str, rest: list[str], env: dict) -> None:
    """Only its cheapest benchmark (the others take minutes), results in the sandbox."""
    results = os.path.join(sb.root, "bench_results")
    kept = _drop_flags(rest, ("--only", "--skip", "--results_dir", "--json"))
    proc = run(sb, ["python", "-m", module, *kept, "--only", "padding_waste",
                    f"--results_dir={results}"], env)
    assert "padding waste" in proc.stdout
    assert [f for f in os.listdir(results) if f.startswith("all_")]


BENCH_RUNNERS = {"bench.compare_wler_slat": _run_compare, "bench.padding_waste": _run_padding_waste,
                 "bench.run_all": _run_run_all}


def run_bench(sb: Sandbox, args: list[str], env: dict) -> None:
    """args: `bench.<name>` and its arguments (the README's `python -m bench.<name> ...`)."""
    module, rest = args[0], args[1:]
    runner = BENCH_RUNNERS.get(module)
    if runner is not None:
        return runner(sb, module, rest, env)
    # Minutes of benchmarking: check that the flags the README gives it exist.
    help_text = run(sb, ["python", "-m", module, "--help"], env).stdout
    for flag, _ in _flags(rest)[0]:
        assert re.search(rf"{re.escape(flag)}\b", help_text), \
            f"{module} has no {flag} (README: python -m {shlex.join(args)})"


# -------------------------------------------------------------------------------- tests


def test_setup_commands_are_verbatim():
    lines = [ln.strip() for block in bash_blocks(_read_readme()) for ln in block.splitlines()]
    for command in SETUP_COMMANDS:
        assert command in lines, f"README's bash blocks lack the set-up command: {command}"


def test_readme_has_commands_of_every_kind():
    kinds = {_kind(c) for c in COMMANDS}
    assert {"pip", "main", "predict", "embed"} <= kinds, kinds


@pytest.mark.slow
@pytest.mark.parametrize("argv", COMMANDS, ids=[_command_id(c) for c in COMMANDS])
def test_readme_command_runs(argv, sandbox):
    env, argv = _split_env(argv)
    kind = _kind(argv)
    if kind in ("pip", "pytest", "tensorboard"):
        pytest.skip(f"{kind} commands are not run (see the module docstring)")
    if kind == "unknown":
        hint = (" (write a benchmark as `python -m bench.<name>`)"
                if any(a.startswith("bench/") for a in argv) else "")
        pytest.fail(f"README command of a kind this test does not know: {shlex.join(argv)}{hint}; "
                    "add a rule for it in tests/test_readme.py")
    runner = {"main": run_main, "predict": run_predict, "bench": run_bench,
              "embed": run_embed}[kind]
    runner(sandbox, argv[2:] if kind == "bench" else argv[3:], env)


@pytest.mark.slow
def test_bench_run_all_summarises(tmp_path):
    """`python -m bench.run_all` runs a benchmark in a subprocess, reads its JSON and writes the
    summary (with the cheapest benchmark; the others take minutes)."""
    sb = Sandbox(root=str(tmp_path), data_dir=str(tmp_path / "tfds"))
    _run_run_all(sb, "bench.run_all", [], {})
    results = os.path.join(sb.root, "bench_results")
    summary_file, = [f for f in os.listdir(results) if f.startswith("all_")]
    with open(os.path.join(results, summary_file)) as f:
        summary = json.load(f)
    assert summary["benchmarks"]["padding_waste"]["returncode"] == 0
    assert any(r["metric"].startswith("padding waste") for r in summary["summary"])


# --------------------------------------------------------------------------- documentation

DOCS = ["README.md", "CHANGELOG.md", os.path.join("bench", "README.md")] + sorted(
    os.path.join("docs", f) for f in os.listdir(os.path.join(REPO, "docs")) if f.endswith(".md"))


def _heading_anchors(text: str) -> set[str]:
    """GitHub's anchors of a Markdown file's headings (outside code blocks)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    anchors = set()
    for title in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


@pytest.mark.parametrize("doc", DOCS)
def test_doc_links_resolve(doc):
    """Every relative link of the user docs names a file of the repository (and a heading of it,
    with `#anchor`); the docs name nothing outside the repository."""
    path = os.path.join(REPO, doc)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    for outside in (os.pardir + "/shared", "/work/"):  # paths outside the repository
        assert outside not in text, f"{doc} refers to {outside!r}, outside the repository"
    prose = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", prose):
        if re.match(r"[a-z]+:", target):
            continue
        file_part, _, anchor = target.partition("#")
        linked = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part \
            else path
        assert linked.startswith(REPO + os.sep) and os.path.exists(linked), \
            f"{doc}: link {target} names no file of the repository"
        if anchor and linked.endswith(".md"):
            with open(linked, encoding="utf-8") as f:
                assert anchor in _heading_anchors(f.read()), \
                    f"{doc}: link {target}: no heading with that anchor"
