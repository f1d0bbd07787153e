"""bench/ is a small toolkit run as `python -m bench.<name>`: no script edits `sys.path` or
imports another script; what they share is bench/common.py (and bench/torch_reference.py, the
PyTorch twins). The files are read, not imported (tests never import bench/)."""
import ast
import glob
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBRARIES = {"common", "torch_reference"}  # bench modules that are not scripts
SCRIPTS = sorted(p for p in glob.glob(os.path.join(REPO, "bench", "*.py"))
                 if os.path.basename(p)[:-3] not in LIBRARIES | {"__init__"})


def _bench_imports(tree: ast.AST) -> set[str]:
    """The bench modules a file imports (`from bench import x`, `import bench.x`, ...)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and (
                node.module == "bench" or node.module.startswith("bench.")):
            out |= ({a.name for a in node.names} if node.module == "bench"
                    else {node.module.split(".")[1]})
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("bench.")}
    return out


def _uses_sys_path(tree: ast.AST) -> bool:
    return any(isinstance(n, ast.Attribute) and n.attr == "path" and isinstance(n.value, ast.Name)
               and n.value.id == "sys" for n in ast.walk(tree))


def test_scripts_import_only_the_shared_modules_and_never_edit_sys_path():
    assert len(SCRIPTS) >= 10
    for path in SCRIPTS + [os.path.join(REPO, "bench", f"{m}.py") for m in LIBRARIES]:
        with open(path) as f:
            text = f.read()
        name, tree = os.path.relpath(path, REPO), ast.parse(text)
        assert not _uses_sys_path(tree), f"{name} edits sys.path"
        assert _bench_imports(tree) <= LIBRARIES, name
        if path in SCRIPTS:
            assert 'if __name__ == "__main__":' in text, f"{name} is not a script"


def test_device_script_and_runner_use_module_form():
    with open(os.path.join(REPO, "bench", "device_run.sh")) as f:
        text = f.read()
    assert "python3 -m bench." in text and "bench/" not in text.replace(
        "bench/device_run.sh", "").replace("bench/README.md", "")
    with open(os.path.join(REPO, "bench", "run_all.py")) as f:
        text = f.read()
    assert '"-m", f"bench.{name}"' in text
