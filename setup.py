"""wler_jax: weakly labelled audio event recognition (Kumar & Raj 2017) in JAX/Flax."""
from setuptools import find_packages, setup

# Versions verified together on Python 3.11 (CPU, Nov 2026); docs/stack_notes.md records what they do.
INSTALL_REQUIRES = [
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "flax==0.12.8",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "ml-collections==1.1.0",
    "numpy==2.4.6",
    "scipy==1.17.1",
    "librosa==0.11.0",
    "soxr==1.1.0",
    "soundfile==0.14.0",
    "tensorflow-datasets==4.9.10",
    "array-record==0.8.6",
    "grain==0.2.18",
    "tensorboardX==2.6.5",
    "scikit-learn==1.9.1",
    "sed_scores_eval==0.0.4",
    "pandas==3.1.1",  # sed_scores_eval 0.0.4 + pandas 3: see wler_jax/serving/localisation.py
    "setuptools==80.9.0",  # sed_eval -> dcase_util imports pkg_resources (gone in setuptools 81+)
    "absl-py==2.5.1",
    "tqdm==4.70.1",
    "matplotlib==3.11.2",
    "flatbuffers==25.12.19",  # jax.export serialisation
]

EXTRAS = {
    # pytest-xdist: pytest.ini runs the suite in two worker processes (most tests are
    # single-threaded compiles; two workers keep both cores of a small CI machine busy)
    "test": ["pytest==9.2.0", "pytest-xdist==3.8.0", "nbclient==0.11.0", "nbformat==5.11.1",
             "ipykernel==7.4.0",
             # tests/test_serve.py: the server, and the headless-browser test (Playwright drives
             # the system's Chromium, /usr/bin/chromium; its own browser download is never used)
             "starlette==1.10.0", "uvicorn==0.55.0", "playwright==1.65.3",
             # tests/test_export_onnx.py: onnxruntime's scores against predict_fn's
             "onnx==1.23.2", "onnxruntime==1.32.0", "onnx-ir==1.1.0"],
    # PyTorch only for side-by-side speed comparisons in bench/; never needed by the package.
    "bench": ["torch==2.13.0"],
    # python -m wler_jax.export --format=onnx (docs/deployment.md, "ONNX"). The converter,
    # jax2onnx==0.17.1, is installed apart with `pip install --no-deps jax2onnx==0.17.1`: its
    # metadata caps orbax-checkpoint below 0.11.37 (ours is 0.12.8) and pulls equinox, dm-pix,
    # huggingface-hub, netron and orbax-export, none of which its converter needs.
    "onnx": ["onnx==1.23.2", "onnxruntime==1.32.0", "onnx-ir==1.1.0"],
    # python -m wler_jax.serve: the page and the JSON endpoint (docs/deployment.md, "Page")
    "serve": ["starlette==1.10.0", "uvicorn==0.55.0"],
    # The HEAR 2021 validator (hear-validator wler_jax.hear --model WORKDIR): it imports both
    # PyTorch and TensorFlow and accepts only a torch.nn.Module model, which wler_jax.hear
    # provides when torch is installed. Not needed to use wler_jax.hear itself.
    "hear": ["hearvalidator==2021.0.2", "torch==2.13.0", "tensorflow==2.21.0"],
}

setup(
    name="wler_jax",
    version="0.1.1",
    description="Weakly labelled audio event recognition (Kumar & Raj 2017) in JAX/Flax",
    packages=find_packages(include=["wler_jax", "wler_jax.*"]),
    python_requires=">=3.11,<3.12",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
)
