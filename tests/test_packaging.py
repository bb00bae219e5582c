"""Installing the project (`make install`) prints no setuptools deprecation.

The `project.license` table form made every `pip install -e .` print the same deprecation
three times (once per build step); the SPDX string needs setuptools 77.
"""

import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

from packaging.requirements import Requirement

BASE_DIR = Path(__file__).resolve().parent.parent
BUILD_METADATA = (
    "import warnings; warnings.simplefilter('always')\n"
    "from setuptools import build_meta\n"
    "print(build_meta.prepare_metadata_for_build_wheel('meta'))\n"
)


def test_the_build_metadata_is_written_without_a_warning(tmp_path):
    # Given: the project's pyproject.toml and README, outside the checkout (no egg-info there).
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(BASE_DIR / name, tmp_path / name)
    (tmp_path / "meta").mkdir()

    # When: setuptools prepares the wheel metadata, as pip does on install.
    result = subprocess.run(
        [sys.executable, "-c", BUILD_METADATA], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )

    # Then: no warning, and the license is declared as an SPDX expression.
    assert result.returncode == 0, result.stderr
    assert "warning" not in (result.stdout + result.stderr).lower(), result.stderr
    metadata = next((tmp_path / "meta").glob("*.dist-info")) / "METADATA"
    assert "License-Expression: MIT" in metadata.read_text()


def test_the_build_requirement_admits_the_setuptools_that_reads_it():
    pyproject = tomllib.loads((BASE_DIR / "pyproject.toml").read_text())
    requirement = Requirement(pyproject["build-system"]["requires"][0])
    assert requirement.name == "setuptools"
    assert "76.9" not in requirement.specifier  # the SPDX string needs setuptools >= 77
    assert version("setuptools") in requirement.specifier
