"""The package's metadata in the form setuptools takes without a deprecation warning."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_license_is_an_spdx_expression_setuptools_reads_silently():
    """A license table makes setuptools print a deprecation before anything of the product's
    own on a fresh clone's ``make run``; a string needs setuptools 77."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert isinstance(meta["project"]["license"], str)
    assert not any("License ::" in c for c in meta["project"].get("classifiers", []))
    wanted = [r for r in meta["build-system"]["requires"] if r.startswith("setuptools")]
    assert wanted and int(wanted[0].split(">=")[1].split(".")[0]) >= 77


def test_the_editable_install_keeps_setuptools_note_to_itself():
    """A fresh clone's ``make run`` opens with the product's words: setuptools' note on a
    flat-layout editable install (re-emitted by pip) is filtered where the Makefile installs."""
    install = [line for line in (ROOT / "Makefile").read_text().splitlines()
               if "pip install -q -e" in line]
    assert install and all('PYTHONWARNINGS="ignore:Editable installation"' in line
                           for line in install)
