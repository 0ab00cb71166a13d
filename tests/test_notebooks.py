"""Every notebook in colab/ runs top to bottom in a fresh kernel (nbclient), at the small scale its
parameter cell offers, and is committed with its outputs cleared.

As papermill does, the values below are injected in a new cell right after the cell tagged
`parameters`: SCALE = "tiny" (a tiny random model instead of SmolLM2 where a notebook trains or
generates at length), fewer chat tokens, a smaller benchmark subset, and a run directory under the
test's tmp_path. A cell that raises fails the test with the cell and its traceback.
"""

import ast
import pathlib
import time

import nbformat
import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
COLAB = REPO_ROOT / "colab"
NOTEBOOKS = sorted(COLAB.glob("*.ipynb"))
REQUIRED = {"quickstart.ipynb", "cdr_simpo.ipynb", "evaluation.ipynb"}

# Small-scale values for the names a notebook's parameter cell defines (others are left alone).
SMALL = {
    "SCALE": "tiny",
    "CHAT_TOKENS": 8,
    "LIMIT": 6,  # the LC fit's GroupKFold needs at least 5 prompts
    "MODELS": ["FuseChat-Llama-3.1-8B-Instruct"],
}


def _read(path: pathlib.Path):
    return nbformat.read(str(path), as_version=4)


def _parameters_cell(nb):
    cells = [i for i, cell in enumerate(nb.cells) if "parameters" in cell.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, "a notebook has exactly one cell tagged `parameters`"
    return cells[0]


def _assigned_names(source: str) -> set[str]:
    return {
        target.id
        for node in ast.parse(source).body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }


def test_colab_holds_the_required_notebooks():
    assert REQUIRED <= {path.name for path in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_with_outputs_cleared(path):
    nb = _read(path)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: outputs not cleared"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_cell_installs_in_colab_and_picks_the_accelerator(path):
    nb = _read(path)
    first = next(cell for cell in nb.cells if cell.cell_type == "code").source
    assert 'find_spec("alignax") is None' in first  # skipped where alignax is importable
    assert "pip" in first and "git" in first and "clone" in first  # installs from the repository
    assert "nvidia-smi" in first and "tpu" in first.lower()  # detects a GPU or TPU runtime
    index = _parameters_cell(nb)
    assert "SCALE" in _assigned_names(nb.cells[index].source)


def _inject(nb, workdir: pathlib.Path, evaldata: pathlib.Path | None):
    index = _parameters_cell(nb)
    names = _assigned_names(nb.cells[index].source)
    values = {k: v for k, v in SMALL.items() if k in names}
    values["WORKDIR"] = str(workdir)
    if "EVALDATA" in names:
        assert evaldata is not None
        values["EVALDATA"] = str(evaldata)
    assert values["SCALE"] == "tiny"
    source = "# Injected by tests/test_notebooks.py\n" + "".join(f"{k} = {v!r}\n" for k, v in values.items())
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(index + 1, cell)
    return nb


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom(path, tmp_path, request):
    from nbclient import NotebookClient

    nb = _read(path)
    evaldata = None
    if "EVALDATA" in _assigned_names(nb.cells[_parameters_cell(nb)].source):
        evaldata = request.getfixturevalue("evaldata_dir")  # tests/conftest.py: ../shared/evaldata
    nb = _inject(nb, tmp_path / "run", evaldata)
    started = time.time()
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(REPO_ROOT)}}).execute()
    print(f"{path.name}: {time.time() - started:.0f} s")
    executed = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in executed)  # every cell ran
    errors = [out for cell in executed for out in cell.outputs if out.output_type == "error"]
    assert not errors
    assert (tmp_path / "run").is_dir()  # the run wrote where it was told, not into the checkout
