"""Packaging: what pyproject.toml declares, and what a user gets from the sdist and the wheel.

The first tests read pyproject.toml and the source tree: every folder with Python files under a
mapped folder is a listed package, every third-party import is a declared dependency, the `all`
extra holds every CPU extra. The rest are the wheel check (`make wheel-check`, also part of the
suite): build the sdist from this tree, a wheel from the unpacked sdist alone, check both, install
the wheel into a fresh virtual environment (no system site-packages), import every module it
ships and run the quickstart pipeline from a temporary folder, as a user would.

The fresh environment's dependencies come from a local wheelhouse, ``build/wheelhouse`` (or
``$CURATE_WHEELHOUSE``), filled from PyPI the first time (and whenever a dependency is missing
from it); delete it to pick up newer releases.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
import zipfile
from collections.abc import Iterator
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]
PACKAGE_DIR: dict[str, str] = PYPROJECT["tool"]["setuptools"]["package-dir"]
PACKAGES: list[str] = PYPROJECT["tool"]["setuptools"]["packages"]
EXTRAS: dict[str, list[str]] = PROJECT["optional-dependencies"]
# Extras that `all` leaves out: `all` itself, the test and benchmark tool sets, any extra that
# needs a GPU (list it here when adding one), and `airflow`: the scheduler that runs the DAGs in
# dags/ is installed where the DAGs run, not with curate's features (the test set installs it).
NOT_IN_ALL = {"all", "dev", "bench", "vllm", "airflow"}
# Files under the mapped folders that are deliberately not shipped in the wheel.
NOT_SHIPPED: set[str] = set()
# Build outputs never copied when the tree is not a git checkout (e.g. the unpacked sdist).
BUILD_OUTPUTS = {".git", ".venv", "target", "build", "dist", "__pycache__", ".pytest_cache", ".mypy_cache", ".hypothesis", "out", ".curate"}


def source_files() -> list[str]:
    """The tree's files (repository-relative, POSIX): tracked and untracked but not ignored."""
    if (ROOT / ".git").exists():
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT, capture_output=True, check=True,
        ).stdout.decode()
        return sorted(p for p in set(out.split("\0")) if p and (ROOT / p).is_file())
    files = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in BUILD_OUTPUTS and not d.endswith(".egg-info")]
        for f in filenames:
            if not f.endswith((".pyc", ".so")):
                files.append(Path(dirpath, f).relative_to(ROOT).as_posix())
    return sorted(files)


def package_of(folder: str) -> str | None:
    """The package a source folder becomes (`pipelines/stages` -> `curate.pipelines.stages`)."""
    best = None
    for pkg, root in PACKAGE_DIR.items():
        if folder == root or folder.startswith(root + "/"):
            if best is None or len(root) > len(PACKAGE_DIR[best]):
                best = pkg
    if best is None:
        return None
    rest = folder[len(PACKAGE_DIR[best]) :].strip("/")
    return best + ("." + rest.replace("/", ".") if rest else "")


def folder_of(package: str) -> str:
    """The source folder of a package (`curate.pipelines.stages` -> `pipelines/stages`)."""
    if package in PACKAGE_DIR:
        return PACKAGE_DIR[package]
    parent, _, leaf = package.rpartition(".")
    return f"{folder_of(parent)}/{leaf}"


def shipped_files() -> dict[str, str]:
    """Every source file under a mapped folder and its path inside the wheel."""
    out = {}
    for rel in source_files():
        folder, _, name = rel.rpartition("/")
        pkg = package_of(folder)
        if pkg is not None and rel not in NOT_SHIPPED:
            out[rel] = pkg.replace(".", "/") + "/" + name
    return out


def test_every_folder_with_files_is_a_listed_package() -> None:
    """setuptools cannot discover packages across the mapped folders: each folder is listed (data
    folders too, as setuptools asks), and a new subfolder that is not would be silently left out
    of the wheel (or shipped with a deprecation warning, for data)."""
    folders = {rel.rpartition("/")[0] for rel in shipped_files()}
    missing = {f"{package_of(f)} ({f}/)" for f in folders if package_of(f) not in PACKAGES}
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"
    code = {rel.rpartition("/")[0] for rel in shipped_files() if rel.endswith(".py")}
    no_init = sorted(f for f in code if not (ROOT / f / "__init__.py").is_file())
    assert not no_init, f"folders with Python files but no __init__.py: {no_init}"
    for pkg in PACKAGES:
        assert (ROOT / folder_of(pkg)).is_dir(), f"listed package {pkg} has no folder {folder_of(pkg)}/"


def requirement_names(reqs: list[str], seen: set[str] | None = None) -> set[str]:
    """Distribution names of `reqs`, following `curate[extra]` into the extras."""
    seen = set() if seen is None else seen
    names = set()
    for r in map(Requirement, reqs):
        if canonicalize_name(r.name) == "curate":
            for extra in r.extras - seen:
                seen.add(extra)
                names |= requirement_names(EXTRAS[extra], seen)
        else:
            names.add(canonicalize_name(r.name))
    return names


def test_extras() -> None:
    """`all` installs every extra that runs on CPU; `dev` (the test set) includes `all`."""
    assert {f"curate[{e}]" for e in EXTRAS if e not in NOT_IN_ALL} <= set(EXTRAS["all"])
    assert "curate[all]" in EXTRAS["dev"]
    assert "curate[airflow]" in EXTRAS["dev"], "CI parses and runs the DAGs: the test set installs Airflow"
    assert "numpy" in requirement_names(PROJECT["dependencies"])


def imports(path: Path) -> Iterator[tuple[str, bool]]:
    """(top-level module, at module level?) of each absolute import a file makes at run time.
    Imports inside functions and `try: ... except ImportError:` are not module-level; those
    under `if TYPE_CHECKING:` are left out."""

    def walk(nodes: list[ast.stmt], top: bool) -> Iterator[tuple[str, bool]]:
        for node in nodes:
            if isinstance(node, ast.Import):
                yield from ((a.name.split(".")[0], top) for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                yield node.module.split(".")[0], top
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                yield from walk(node.body, top and isinstance(node, ast.ClassDef))
            elif isinstance(node, ast.If):
                if "TYPE_CHECKING" not in ast.unparse(node.test):
                    yield from walk(node.body, top)
                yield from walk(node.orelse, top)
            elif isinstance(node, ast.Try):
                optional = any("ImportError" in ast.unparse(h.type) for h in node.handlers if h.type)
                yield from walk(node.body, top and not optional)
                for h in node.handlers:
                    yield from walk(h.body, top)
                yield from walk(node.orelse + node.finalbody, top)
            elif isinstance(node, (ast.With, ast.AsyncWith)):
                yield from walk(node.body, top)
            elif isinstance(node, (ast.For, ast.AsyncFor, ast.While)):
                yield from walk(node.body + node.orelse, top)

    yield from walk(ast.parse(path.read_text(encoding="utf-8"), str(path)).body, True)


def test_third_party_imports_are_declared() -> None:
    """A module-level import needs a core dependency (numpy was once only there by accident);
    an import anywhere needs a core dependency or one of an extra."""
    dists = {k: {canonicalize_name(d) for d in v} for k, v in packages_distributions().items()}
    core = requirement_names(PROJECT["dependencies"])
    optional = core | requirement_names([f"curate[{e}]" for e in EXTRAS if e not in {"dev", "bench"}])
    bad = []
    for rel in shipped_files():
        if not rel.endswith(".py"):
            continue
        for mod, top in imports(ROOT / rel):
            if mod in sys.stdlib_module_names or mod in {"curate", "__future__"}:
                continue
            provided_by = dists.get(mod, {canonicalize_name(mod)})
            if not provided_by & (core if top else optional):
                bad.append(f"{rel}: {mod} ({'module level' if top else 'lazy'}) from {sorted(provided_by)}")
    assert not bad, "undeclared dependencies:\n" + "\n".join(bad)


# ---------------------------------------------------------------- the wheel check


def run(cmd: list[str | Path], **kw: object) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure, fail the test with its output."""
    kw.setdefault("timeout", 900)
    res = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    if res.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} exited {res.returncode}\n{res.stdout[-4000:]}\n{res.stderr[-8000:]}")
    return res


def timed(label: str, t0: float) -> None:
    print(f"wheel check: {label} in {time.monotonic() - t0:.0f}s", file=sys.stderr)


class Built:
    def __init__(self, work: Path) -> None:
        self.work = work
        t0 = time.monotonic()
        src = work / "tree"
        for rel in source_files():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
        sdist_run = run([sys.executable, "-m", "build", "--sdist", "--outdir", work / "sdist", src])
        (self.sdist,) = (work / "sdist").glob("*.tar.gz")
        with tarfile.open(self.sdist) as tf:
            self.sdist_names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
            tf.extractall(work / "unpacked", filter="data")
        timed("sdist", t0)
        # The wheel is built from the unpacked sdist alone: whatever the sdist lacks, it lacks.
        t0 = time.monotonic()
        (unpacked,) = (work / "unpacked").iterdir()
        env = {k: v for k, v in os.environ.items() if k != "CARGO_TARGET_DIR"}
        wheel_run = run([sys.executable, "-m", "build", "--wheel", "--outdir", work / "wheel", unpacked], env=env)
        self.build_log = "\n".join([sdist_run.stdout, sdist_run.stderr, wheel_run.stdout, wheel_run.stderr])
        (self.wheel,) = (work / "wheel").glob("*.whl")
        with zipfile.ZipFile(self.wheel) as zf:
            self.wheel_names = set(zf.namelist())
            info = f"curate-{PROJECT['version']}.dist-info"
            self.wheel_meta = zf.read(f"{info}/WHEEL").decode()
            self.metadata = zf.read(f"{info}/METADATA").decode()
        timed(f"wheel {self.wheel.name} from the sdist", t0)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return Built(tmp_path_factory.mktemp("wheel-check"))


@pytest.mark.slow
def test_sdist_has_the_rust_crate_and_every_source_file(built: Built) -> None:
    names = built.sdist_names
    files = source_files()
    crate = [f for f in files if f.startswith(("native/src/", "native/tools/")) or f in ("native/Cargo.toml", "native/Cargo.lock")]
    assert {"native/Cargo.toml", "native/Cargo.lock", "native/src/lib.rs"} <= set(crate)
    assert not set(crate) - names, f"missing from the sdist: {sorted(set(crate) - names)}"
    missing = set(shipped_files()) - names
    assert not missing, f"missing from the sdist: {sorted(missing)}"
    assert {"pyproject.toml", "README.md", "PKG-INFO"} <= names
    junk = sorted(n for n in names if n.startswith("native/target/") or n.endswith((".so", ".pyc")))
    assert not junk, junk


@pytest.mark.slow
def test_build_prints_no_setuptools_warnings(built: Built) -> None:
    """Building from this tree raised no warning of setuptools' (there were ~120 lines of them:
    the experimental [tool.distutils] table, read three times per build, is now setup.cfg)."""
    # Python warnings (SetuptoolsDeprecationWarning, BuildBackendWarning, ...), setuptools' WARNING
    # lines and its "!!" banners. distutils' informational "warning: ..." lines (byte-compiling
    # disabled, MANIFEST.in patterns with nothing to exclude in a clean tree) are not counted.
    noisy = [line for line in built.build_log.splitlines() if re.search(r"\w+Warning\b|^\s*WARNING\b|^\s*!!\s*$", line)]
    assert not noisy, "\n".join(noisy[:20])


@pytest.mark.slow
def test_wheel_is_abi3(built: Built) -> None:
    """One wheel for every CPython >= 3.11 (pyo3's abi3-py311 feature and the cp311-abi3 tag)."""
    m = re.fullmatch(rf"curate-{re.escape(PROJECT['version'])}-cp311-abi3-(\w+)\.whl", built.wheel.name)
    assert m, built.wheel.name
    assert f"Tag: cp311-abi3-{m.group(1)}" in built.wheel_meta.splitlines(), built.wheel_meta
    assert "Root-Is-Purelib: false" in built.wheel_meta
    native = sorted(n for n in built.wheel_names if re.fullmatch(r"curate/_native\..*", n))
    assert native == ["curate/_native.abi3.so", "curate/_native.pyi"], native
    cargo = (ROOT / "native" / "Cargo.toml").read_text(encoding="utf-8")
    assert re.search(r'pyo3 = \{[^}]*"abi3-py311"', cargo), "native/Cargo.toml: pyo3 must have the abi3-py311 feature"


@pytest.mark.slow
def test_wheel_ships_every_package_and_data_file(built: Built) -> None:
    missing = sorted(set(shipped_files().values()) - built.wheel_names)
    assert not missing, f"missing from the wheel: {missing}"
    assert {f"curate/{n}" for n in ("__init__.py", "py.typed", "_native.pyi")} <= built.wheel_names
    requires = {canonicalize_name(Requirement(line.split(":", 1)[1]).name)
                for line in built.metadata.splitlines() if line.startswith("Requires-Dist:")}
    assert requirement_names(PROJECT["dependencies"]) <= requires
    assert "Provides-Extra: all" in built.metadata.splitlines()


@pytest.fixture(scope="module")
def venv(built: Built) -> Path:
    """A fresh virtual environment (no system site-packages) with the wheel installed."""
    t0 = time.monotonic()
    venv = built.work / "venv"
    run([sys.executable, "-m", "venv", venv])
    python = venv / "bin" / "python"
    wheelhouse = Path(os.environ.get("CURATE_WHEELHOUSE") or ROOT / "build" / "wheelhouse")
    wheelhouse.mkdir(parents=True, exist_ok=True)
    install = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
               "--no-index", "--find-links", wheelhouse, built.wheel]
    if subprocess.run([str(c) for c in install], capture_output=True, timeout=900).returncode != 0:
        # something is missing from the wheelhouse: fetch the dependencies, then install offline
        run([sys.executable, "-m", "pip", "download", "--quiet", "--dest", wheelhouse, built.wheel])
        for w in wheelhouse.glob("curate-*.whl"):
            w.unlink()
        run(install)
    timed("fresh venv with the wheel installed", t0)
    return venv


def clean_env(venv: Path) -> dict[str, str]:
    """The environment of a user of the fresh venv: nothing pointing back at this checkout."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV", "CURATE_OUT", "PYTHONHOME"}}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


IMPORT_ALL = """
import importlib, json, sys, traceback
import curate
failed = {}
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except BaseException:
        failed[name] = traceback.format_exc(limit=3)
import curate._native as native
print(json.dumps({"failed": failed, "curate": curate.__file__, "native": native.__file__,
                  "version": curate.__version__, "threads": native.effective_threads(1)}))
"""


@pytest.mark.slow
def test_installed_wheel_imports_every_module(built: Built, venv: Path) -> None:
    modules = sorted(
        n[:-3].replace("/", ".").removesuffix(".__init__")
        for n in built.wheel_names if n.startswith("curate/") and n.endswith(".py")
    )
    assert "curate.pipelines.cli" in modules and "curate.filters.minhash_dedup" in modules
    modules.remove("curate.__main__")  # runs the CLI: checked below with `python -m curate`
    t0 = time.monotonic()
    cwd = built.work / "empty"
    cwd.mkdir(exist_ok=True)
    res = run([venv / "bin" / "python", "-I", "-c", IMPORT_ALL, *modules], cwd=cwd, env=clean_env(venv))
    timed(f"import of {len(modules)} modules", t0)
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert not out["failed"], "\n".join(f"{k}:\n{v}" for k, v in out["failed"].items())
    assert Path(out["curate"]).is_relative_to(venv), out
    assert Path(out["native"]).name == "_native.abi3.so", out
    assert out["version"] == PROJECT["version"] and out["threads"] == 1
    res = run([venv / "bin" / "python", "-I", "-m", "curate", "--help"], cwd=cwd, env=clean_env(venv))
    assert "run" in res.stdout


LOCATE_EXAMPLES = "import importlib.resources as r; print(r.files('curate.pipelines') / 'examples')"

COUNT_ROWS = """
import json, polars as pl
kept, dropped = pl.read_delta("out/quickstart"), pl.read_delta("out/quickstart.dropped")
print(json.dumps({"kept": kept.height, "dropped": dropped.height}))
"""


@pytest.mark.slow
def test_installed_wheel_runs_the_quickstart(built: Built, venv: Path) -> None:
    """As a user with only the wheel would: copy the shipped examples (their input paths are
    relative to the folder curate runs in) into a new folder and run the quickstart there."""
    env = clean_env(venv)
    examples = Path(run([venv / "bin" / "python", "-I", "-c", LOCATE_EXAMPLES], cwd=built.work, env=env).stdout.strip())
    assert examples.is_relative_to(venv), examples
    here = built.work / "quickstart"
    shutil.copytree(examples, here / "pipelines" / "examples")
    t0 = time.monotonic()
    res = run([venv / "bin" / "curate", "run", "pipelines/examples/quickstart.yaml"], cwd=here, env=env, timeout=600)
    timed("quickstart run", t0)
    assert "wrote out/quickstart version 0" in res.stderr, res.stderr
    res = run([venv / "bin" / "curate", "versions", "out/quickstart"], cwd=here, env=env)
    counts = json.loads(run([venv / "bin" / "python", "-I", "-c", COUNT_ROWS], cwd=here, env=env).stdout)
    assert counts["kept"] > 2000 and counts["kept"] + counts["dropped"] == 2662, counts


@pytest.mark.slow
def test_installed_wheel_runs_from_a_source_checkout(built: Built, venv: Path) -> None:
    """Issue 16, 13: clone, `pip install .` (not editable), `curate run` from the checkout's root.
    The checkout's `curate/` folder (the package root of the source layout) is in the working
    directory, which Ray puts first on its workers' sys.path: it must not hide the installed package."""
    env = clean_env(venv)
    here = built.work / "checkout"
    shutil.copytree(ROOT / "curate", here / "curate", ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    shutil.copytree(ROOT / "pipelines" / "examples", here / "pipelines" / "examples")
    res = run([venv / "bin" / "curate", "run", "pipelines/examples/quickstart.yaml", "--no-progress"], cwd=here, env=env, timeout=600)
    assert "wrote out/quickstart version 0" in res.stderr, res.stderr
    assert "No module named" not in res.stderr
