"""notebooks/diarize_corpus.ipynb runs top to bottom, unchanged, from a folder outside the checkout,
on a Ray of its own and AMI excerpts, and is committed without outputs."""

from __future__ import annotations

import os
import shutil

import nbformat
import pytest
from conftest import ami_rows, with_absolute_paths, write_jsonl
from helpers import REPO
from nbclient import NotebookClient

NOTEBOOK = REPO / "notebooks" / "diarize_corpus.ipynb"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_committed_notebook_has_no_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


def test_notebook_runs_top_to_bottom_from_any_folder_and_draws_the_timeline(tmp_path, monkeypatch):
    """A copy of the notebook in a temporary folder (its working folder), three excerpts (the
    notebook's steps, not the corpus's size, are under test), no RAY_ADDRESS: a private local Ray."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    copy = shutil.copy(NOTEBOOK, folder / NOTEBOOK.name)
    manifest = write_jsonl(
        tmp_path / "manifest.jsonl", [with_absolute_paths(r) for r in ami_rows("trn02", "trn05", "trn07")]
    )
    png = tmp_path / "timeline.png"
    monkeypatch.setenv("MANIFEST", str(manifest))
    monkeypatch.setenv("OUTPUT", str(tmp_path / "run"))
    monkeypatch.setenv("TIMELINE_PNG", str(os.environ.get("NOTEBOOK_TIMELINE_PNG", png)))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    notebook = nbformat.read(copy, as_version=4)
    NotebookClient(
        notebook, timeout=540, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    ).execute()
    printed = "".join(o.get("text", "") for cell in notebook.cells for o in cell.get("outputs", []))
    assert "OVERALL (3)" in printed
    assert "Ray dashboard: http" in printed and "ELAN files" in printed
    assert "WARNING" not in printed and "core_worker" not in printed, "Ray's own logs stay in its log files"
    assert os.path.getsize(os.environ["TIMELINE_PNG"]) > 10_000
    assert (tmp_path / "run" / "report.html").is_file()
