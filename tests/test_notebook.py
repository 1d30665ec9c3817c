"""notebooks/diarize_corpus.ipynb runs top to bottom against a local Ray and the AMI excerpts, and is
committed without outputs."""

from __future__ import annotations

import os

import nbformat
import pytest
from conftest import AMI
from helpers import REPO
from nbclient import NotebookClient

NOTEBOOK = REPO / "notebooks" / "diarize_corpus.ipynb"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_committed_notebook_has_no_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


def test_notebook_runs_top_to_bottom_and_draws_the_timeline(tmp_path, monkeypatch):
    png = tmp_path / "timeline.png"
    monkeypatch.setenv("MANIFEST", str(AMI / "manifest.jsonl"))
    monkeypatch.setenv("OUTPUT", str(tmp_path / "run"))
    monkeypatch.setenv("TIMELINE_PNG", str(os.environ.get("NOTEBOOK_TIMELINE_PNG", png)))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # "local": the notebook would otherwise join ("auto") any Ray cluster already running on this machine.
    monkeypatch.setenv("RAY_ADDRESS", "local")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook, timeout=540, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    ).execute()
    printed = "".join(o.get("text", "") for cell in notebook.cells for o in cell.get("outputs", []))
    assert "OVERALL (10)" in printed
    assert "Ray dashboard: http" in printed and "ELAN files" in printed
    assert os.path.getsize(os.environ["TIMELINE_PNG"]) > 10_000
    assert (tmp_path / "run" / "report.html").is_file()
