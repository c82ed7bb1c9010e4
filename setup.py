"""improve_nas: AdaNAS (AdaNet + NASNet-A ensembles) on TensorFlow 2.15."""

import re
from pathlib import Path

from setuptools import find_packages, setup

_HERE = Path(__file__).parent
_VERSION = re.search(r'__version__ = "([^"]+)"',
                     (_HERE / "improve_nas" / "__init__.py").read_text()).group(1)

setup(
    name="improve_nas",
    version=_VERSION,
    description=("AdaNAS: grow ensembles of NASNet-A towers with AdaNet, "
                 "knowledge distillation and learned mixture weights"),
    long_description=(_HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    # The adanet engine's pinned stack (install_requires) installs on 3.11
    # only; the Keras engine's (requirements-keras.txt, installed with
    # --no-deps for the package itself) on 3.12 and 3.13 (README:
    # Installing).
    python_requires=">=3.11,<3.14",
    classifiers=[
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "License :: OSI Approved :: Apache Software License",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
    packages=find_packages(include=["improve_nas", "improve_nas.*",
                                    "trainer", "trainer.*"]),
    # adanet==0.9.0 is installed separately with --no-deps: its own pins
    # (absl-py<1.0, protobuf<4, nose, mock) conflict with TensorFlow 2.15.
    install_requires=[
        "tensorflow-estimator==2.15.0",
        "tensorflow-datasets==4.9.4",
        "tensorflow-metadata==1.15.0",
        "protobuf==4.25.8",
        "absl-py==1.4.0",
        "numpy==1.26.4",
        "ml-collections==0.1.1",
        "scikit-learn==1.5.2",
        "matplotlib==3.8.4",
    ],
    extras_require={
        "cpu": ["tensorflow-cpu==2.15.1"],
        "gpu": ["tensorflow[and-cuda]==2.15.1"],
        "test": ["pytest==8.3.3", "pytest-xdist==3.8.0"],
    },
    entry_points={
        "console_scripts": [
            "improve-nas=trainer.main:run",
            "improve-nas-arch=trainer.arch:run",
            "improve-nas-report=trainer.report:run",
            "improve-nas-cluster=trainer.cluster:run",
            "improve-nas-compare=trainer.compare:run",
        ],
    },
)
