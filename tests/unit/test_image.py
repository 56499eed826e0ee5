"""The container images install exactly what pyproject.toml declares, and the Helm
chart's default image is the one `make image` tags.

Read from the Containerfiles and the Makefile themselves (no container builder is
needed): every `pip install` installs the project (`.[extra]`) and nothing else, with
an extra pyproject defines; the CPU image removes what `make install` removes; every
folder pyproject's package finder reads is copied in.
"""

import os
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
IMAGES = {"cpu": ROOT / "image" / "Containerfile.cpu", "gpu": ROOT / "image" / "Containerfile.gpu"}


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [tuple(line.split(None, 1)) for line in joined.splitlines() if line.strip()]


def shell_commands(path: Path) -> list[list[str]]:
    """Each `&&`-separated command of every RUN, as argv."""
    runs = [args for op, args in instructions(path) if op == "RUN"]
    return [shlex.split(cmd) for run in runs for cmd in run.split("&&")]


def pip(path: Path, verb: str) -> list[list[str]]:
    return [argv[2:] for argv in shell_commands(path) if argv[:2] == ["pip", verb]]


def makefile_uninstalls() -> list[str]:
    (line,) = [ln for ln in (ROOT / "Makefile").read_text().splitlines() if "uninstall" in ln and "$(PIP)" in ln]
    return [word for word in line.split() if not word.startswith(("-", "$(")) and word != "uninstall"]


@pytest.mark.parametrize("extra", sorted(IMAGES))
def test_the_image_installs_the_project_with_its_extra_and_nothing_else(extra):
    (install,) = pip(IMAGES[extra], "install")
    packages = [a for i, a in enumerate(install) if not a.startswith("-") and not install[i - 1].startswith("--")]
    assert packages == [f".[{extra}]"], f"{IMAGES[extra].name} installs {packages}"
    assert extra in PYPROJECT["project"]["optional-dependencies"]
    assert "dev" not in packages[0] and "bench" not in packages[0]


@pytest.mark.parametrize("extra", sorted(IMAGES))
def test_the_image_copies_every_source_folder_pyproject_packages(extra):
    copied = {src for op, args in instructions(IMAGES[extra]) if op == "COPY" for src in args.split()[:-1]}
    assert set(PYPROJECT["tool"]["setuptools"]["packages"]["find"]["where"]) <= copied
    assert {"pyproject.toml", PYPROJECT["project"]["readme"]} <= copied
    python = PYPROJECT["project"]["requires-python"]
    (base,) = [args for op, args in instructions(IMAGES[extra]) if op == "ARG" and args.startswith("BASE=")]
    version = re.search(r"python:(\d+\.\d+)", base).group(1)
    assert f">={version}" in python, f"base image has Python {version}; pyproject requires {python}"


def test_the_cpu_image_removes_what_make_install_removes():
    (uninstall,) = pip(IMAGES["cpu"], "uninstall")
    assert [a for a in uninstall if not a.startswith("-")] == makefile_uninstalls()
    assert makefile_uninstalls() == ["torchvision", "torchaudio", "torchcodec"]
    assert not pip(IMAGES["gpu"], "uninstall")


def test_the_charts_default_image_is_what_make_image_tags():
    cpu, gpu = make("-s", "image-names").split()
    chart = yaml.safe_load((ROOT / "helm" / "shardline" / "Chart.yaml").read_text())
    values = yaml.safe_load((ROOT / "helm" / "shardline" / "values.yaml").read_text())["image"]
    assert values["tag"] == ""  # so the template's default applies: <appVersion>-cpu
    assert cpu == f"{values['repository']}:{chart['appVersion']}-cpu"
    assert gpu == f"{values['repository']}:{chart['appVersion']}-gpu"
    assert chart["appVersion"] == PYPROJECT["project"]["version"]
    # The rendered pods' image: tests/helm/test_chart.py::test_default_image_is_the_one_make_image_tags.


def make(*args: str) -> str:
    """What `make` prints, as when run from a shell: CI runs the suite under `make test`,
    whose MAKELEVEL and MAKEFLAGS would make this make print "Entering directory"."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    return subprocess.run(["make", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout


def make_dry_run(target: str, *assignments: str) -> str:
    return make("-n", target, "CONTAINER=podman", *assignments)


def test_make_image_builds_on_the_containerfiles_base_unless_base_is_given():
    assert "BASE=" not in make_dry_run("image")
    built = shlex.split(
        make_dry_run("image", "BASE=localhost/shardline-base:bookworm", "CONTAINER_BUILD_FLAGS=--isolation chroot")
    )
    assert built[:4] == ["podman", "build", "--isolation", "chroot"]
    assert "BASE=localhost/shardline-base:bookworm" in built
    assert built[built.index("-f") + 1] == "image/Containerfile.cpu"


def test_every_file_beside_the_code_in_the_packages_is_package_data():
    """The images install the project non-editably: a file pyproject's package-data
    does not list stays behind (vllm_engine_args.txt once did, and `shardline
    validate` failed in the image)."""
    data = PYPROJECT["tool"]["setuptools"]["package-data"]
    for root in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["where"]:
        for package in (p for p in (ROOT / root).iterdir() if (p / "__init__.py").is_file()):
            listed = {f for pattern in data.get(package.name, []) for f in package.glob(pattern)}
            files = {f for f in package.rglob("*") if f.is_file() and f.suffix not in {".py", ".pyc"}}
            assert files <= listed, f"not in [tool.setuptools.package-data]: {sorted(map(str, files - listed))}"
