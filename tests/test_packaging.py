"""The sdist and wheel as PyPI and pip see them: license, metadata, one version, and what ships where.

Built once per module, from this tree, with the venv's own build and hatchling (no isolation, no
network): ``python -m build`` makes the sdist, then the wheel from the sdist, so a file the sdist
forgot breaks the wheel here too.
"""

from __future__ import annotations

import email.message
import email.parser
import pathlib
import re
import subprocess
import sys
import tarfile
import zipfile

import pytest

from helpers import ROOT, child_env

DEV_TOOLS = {"mypy", "ruff", "atheris", "pytest", "pytest-timeout", "hypothesis", "build", "twine", "hatchling"}


def _version_in_source() -> str:
    text = (pathlib.Path(ROOT) / "sockact" / "__init__.py").read_text()
    found = re.findall(r'^__version__ = "([^"]+)"$', text, re.M)
    assert len(found) == 1, "one __version__ in sockact/__init__.py"
    return found[0]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), ROOT],
        env=child_env(),
        capture_output=True,
        check=True,
        timeout=120,
    )
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


@pytest.fixture(scope="module")
def metadata(dist: dict[str, pathlib.Path]) -> email.message.Message:
    with zipfile.ZipFile(dist["wheel"]) as whl:
        (name,) = [n for n in whl.namelist() if n.endswith(".dist-info/METADATA")]
        return email.parser.Parser().parsestr(whl.read(name).decode())


def test_the_wheel_holds_the_library_its_license_and_nothing_else(dist: dict[str, pathlib.Path]) -> None:
    version = _version_in_source()
    assert dist["wheel"].name == f"sockact-{version}-py3-none-any.whl"
    with zipfile.ZipFile(dist["wheel"]) as whl:
        names = whl.namelist()
        info = f"sockact-{version}.dist-info"
        assert f"{info}/licenses/LICENSE" in names
        assert "MIT License" in whl.read(f"{info}/licenses/LICENSE").decode()
        assert "sockact = sockact.cli:main" in whl.read(f"{info}/entry_points.txt").decode()
    assert {
        "sockact/py.typed",
        "sockact/__init__.py",
        "sockact/serve/__init__.py",
        "sockact/integrations/uvicorn.py",
    } <= set(names)
    assert {n.split("/")[0] for n in names} == {"sockact", info}  # no tests, examples or units installed


def test_metadata_is_what_pypi_shows(metadata: email.message.Message) -> None:
    assert metadata["Version"] == _version_in_source()  # the one version source
    assert metadata["License-Expression"] == "MIT" and metadata.get_all("License-File") == ["LICENSE"]
    assert float(metadata["Metadata-Version"]) >= 2.4  # the first that carries License-Expression
    assert metadata["Requires-Python"] == ">=3.10"
    classifiers = set(metadata.get_all("Classifier") or [])
    for minor in (10, 11, 12, 13):
        assert f"Programming Language :: Python :: 3.{minor}" in classifiers
    assert {"Operating System :: POSIX :: Linux", "Framework :: AsyncIO", "Typing :: Typed"} <= classifiers
    assert any(c.startswith("Development Status :: ") for c in classifiers)
    assert not any(c.startswith("License :: ") for c in classifiers)  # PEP 639: the expression says it
    urls = dict(u.split(", ", 1) for u in metadata.get_all("Project-URL") or [])
    assert urls["Source"].startswith("https://github.com/") and urls["Issues"].endswith("/issues")
    assert "systemd" in metadata["Keywords"].split(",")
    requires = metadata.get_all("Requires-Dist") or []
    assert not [r for r in requires if "extra ==" not in r]  # stdlib only
    published = {re.split(r"[<>=;\[ ]", r)[0].lower() for r in requires}
    assert not published & DEV_TOOLS, "dev tools belong in [dependency-groups], not in an extra"
    assert set(metadata.get_all("Provides-Extra") or []) == {
        "systemd",
        "plot",
        "uvicorn",
        "hypercorn",
        "aiohttp",
        "tornado",
        "waitress",
        "gunicorn",
        "servers",
    }


def test_the_sdist_has_what_building_testing_and_the_readme_need(dist: dict[str, pathlib.Path]) -> None:
    with tarfile.open(dist["sdist"]) as sdist:
        names = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
    assert {"LICENSE", "README.md", "pyproject.toml", "Makefile", "PKG-INFO"} <= names
    assert {"units/sockact-http.service", "units/sockact-http.socket", "examples/http_server.py"} <= names
    assert {
        "tests/conftest.py",
        "docs/PROTOCOL.md",
        "docs/TROUBLESHOOTING.md",
        "docs/MIGRATING.md",
        "docs/INTEGRATIONS.md",
    } <= names
    assert not {n for n in names if n.startswith((".venv", ".ci/", ".git/", "dist/")) or "__pycache__" in n}


def test_readme_links_work_on_pypi() -> None:
    """PyPI renders README.md away from the repository: every link and image must be absolute."""
    text = (pathlib.Path(ROOT) / "README.md").read_text()
    targets = re.findall(r"\]\(([^)\s]+)", text)
    assert targets, "the README links to its docs"
    relative = [t for t in targets if not t.startswith(("https://", "#"))]
    assert relative == []
    assert text.index("pip install sockact") < text.index("## Use it")


def test_links_into_the_repository_name_files_that_exist() -> None:
    """Absolute links (README on PyPI, docs/) into this repository point at files and folders it has."""
    root = pathlib.Path(ROOT)
    prefixes = ("https://github.com/sockact/sockact/blob/main/", "https://github.com/sockact/sockact/tree/main/")
    prefixes += ("https://raw.githubusercontent.com/sockact/sockact/main/",)
    checked = 0
    for page in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\((https://[^)\s]+)\)", page.read_text()):
            for prefix in prefixes:
                if target.startswith(prefix):
                    path = target[len(prefix) :].split("#")[0]
                    assert (root / path).exists(), f"{page.name} links to {target}, which is not in the tree"
                    checked += 1
    assert checked >= 10
