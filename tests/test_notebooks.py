"""The notebooks run top to bottom on small sizes, in a kernel of this interpreter.

Each notebook's parameter cell reads ``RAY_RELU_NOTEBOOK_SMALL=1`` and switches to tiny
sizes. The kernel is a spec installed into a temporary prefix for ``sys.executable``
(the venv's python), found through ``JUPYTER_PATH``, so a ``python3`` kernel installed
elsewhere on the machine can never be picked up. The notebooks are stored without
outputs; a failing cell fails the test.

The kernels get ``RAY_ADDRESS`` of the test session's Ray, so their ``ray.init()``
*connects* to it (the path a cluster user takes) instead of starting three more local
Rays, and their ``ray.shutdown()`` only disconnects.
"""

import json
import os
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
kernelspec = pytest.importorskip("ipykernel.kernelspec")

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NAMES = ("quickstart", "reproduce_paper", "cluster", "compressors")
KERNEL = "ray-relu-tests"
CELL_TIMEOUT = 240


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory, ray_session):
    """Install a kernel spec for this interpreter in a temporary prefix and point
    Jupyter (and the kernels' environment) at it; restore the environment after."""
    prefix = tmp_path_factory.mktemp("jupyter")
    kernelspec.install(kernel_name=KERNEL, prefix=str(prefix))
    spec = json.loads((prefix / "share/jupyter/kernels" / KERNEL / "kernel.json").read_text())
    assert spec["argv"][0] == sys.executable
    saved = {k: os.environ.get(k) for k in ("JUPYTER_PATH", "RAY_RELU_NOTEBOOK_SMALL",
                                            "MPLBACKEND", "RAY_ADDRESS")}
    os.environ["JUPYTER_PATH"] = str(prefix / "share/jupyter")
    os.environ["RAY_RELU_NOTEBOOK_SMALL"] = "1"
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    os.environ["RAY_ADDRESS"] = ray_session.get_runtime_context().gcs_address
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_stored_without_outputs(name):
    book = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(book)
    for cell in book.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (name, cell.source[:60])
    first_code = next(c for c in book.cells if c.cell_type == "code")
    assert "parameters" in first_code.metadata.get("tags", []), name


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs(name, kernel_env, tmp_path):
    book = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    client = nbclient.NotebookClient(book, kernel_name=KERNEL, timeout=CELL_TIMEOUT,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [o for c in book.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors
    if name == "reproduce_paper":
        text = "".join(o.get("text", "") for c in book.cells if c.cell_type == "code"
                       for o in c.outputs if o.output_type == "stream")
        assert text.count("Measured:") == 5, text   # one sentence per claim
