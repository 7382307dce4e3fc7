"""The package as a user meets it: what importing costs, the top-level names, the
README's Python example, the docs the docstrings point at."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _python(*lines: str) -> None:
    """Run ``lines`` in a fresh interpreter (nothing imported yet); require success."""
    done = subprocess.run([sys.executable, "-c", "\n".join(lines)], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr


def test_codecs_and_models_import_without_ray_pyarrow_or_matplotlib():
    _python("import sys, ray_relu.codecs, ray_relu.models",
            "heavy = {m.split('.')[0] for m in sys.modules}",
            "heavy &= {'ray', 'pyarrow', 'matplotlib', 'pandas'}",
            "assert not heavy, sorted(heavy)")


def test_top_level_names_load_on_use():
    _python("import sys, ray_relu",
            "assert 'ray' not in sys.modules",
            "from ray_relu.models import PlantedReLU",
            "from ray_relu.result import FitResult",
            "assert ray_relu.PlantedReLU is PlantedReLU and ray_relu.FitResult is FitResult",
            "assert ray_relu.codecs is sys.modules['ray_relu.codecs']",
            "assert set(ray_relu.__all__) <= set(dir(ray_relu))",
            "try:",
            "    ray_relu.no_such_name",
            "except AttributeError as exc:",
            "    assert 'no_such_name' in str(exc)",
            "else:",
            "    raise AssertionError('no AttributeError')")


def test_fit_stays_the_function_after_the_submodule_is_imported():
    # Importing ray_relu.fit (as the CLI, demo and experiments do) binds the submodule
    # on the package; ray_relu.fit must still be the function.
    _python("import ray_relu.demo, ray_relu.experiments, ray_relu",
            "from ray_relu.fit import fit",
            "from ray_relu import fit as top",
            "assert ray_relu.fit is fit and top is fit, ray_relu.fit")


def test_fit_can_still_be_replaced_like_a_plain_attribute(monkeypatch):
    import ray_relu
    from ray_relu.fit import fit
    monkeypatch.setattr(ray_relu, "fit", "stand-in")
    assert ray_relu.fit == "stand-in"
    monkeypatch.undo()
    assert ray_relu.fit is fit


def _readme_python() -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert len(blocks) >= 2, f"README.md should have its python examples, found {len(blocks)}"
    return blocks


def _run_readme_block(index: int, tmp_path, monkeypatch):
    import matplotlib
    matplotlib.use("Agg")                 # the example plots; no window in a test
    monkeypatch.chdir(tmp_path)           # it writes history.parquet to the working dir
    namespace: dict = {}
    exec(compile(_readme_python()[index], f"README.md block {index}", "exec"), namespace)
    return namespace


def test_readme_python_example_runs_as_written(ray_session, tmp_path, monkeypatch, capsys):
    result = _run_readme_block(0, tmp_path, monkeypatch)["result"]
    assert result.converged and result.rel_error <= 1e-6
    assert (tmp_path / "history.parquet").is_file()
    printed = capsys.readouterr().out
    assert printed.startswith("FitResult(converged=True")
    assert "iteration  " in printed and "rel_error" in printed


def test_readme_bring_your_own_examples_run_as_written(ray_session, tmp_path,
                                                       monkeypatch):
    for index in range(1, len(_readme_python())):
        namespace = _run_readme_block(index, tmp_path, monkeypatch)
        result = namespace["result"]
        assert result.converged, f"README python block {index} did not converge"


def test_docs_are_in_the_repository_and_linked():
    # Docstrings point at docs/ in this repository, never at a file outside it.
    cited = [str(p.relative_to(ROOT)) for p in (ROOT / "ray_relu").rglob("*.py")
             if "DESIGN.md" in p.read_text()]
    assert not cited, f"docstrings cite DESIGN.md (not in the repository): {cited}"
    readme = (ROOT / "README.md").read_text()
    for doc in ("docs/model.md", "docs/models.md", "docs/codecs.md", "docs/engine.md",
                "docs/data.md", "docs/compressors.md", "docs/results.md"):
        assert (ROOT / doc).is_file() and f"]({doc})" in readme, doc
    for path in (ROOT / "ray_relu").rglob("*.py"):
        for doc in re.findall(r"docs/\w+\.md", path.read_text()):
            assert (ROOT / doc).is_file(), f"{path.relative_to(ROOT)} cites missing {doc}"
