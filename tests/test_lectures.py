"""Run every lecture in ``lectures/`` as a script: its ``assert``s are the checks of its claims.

Each lecture runs in a fresh temporary working directory with ``WHITEBOX_LECTURE_OUT`` pointing
there; the figures it lists in its ``FIGURES`` global must exist, lie in that folder and be
non-empty. ``lectures/_figures.py`` is the lectures' shared figure helper, not a lecture.
"""

import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LECTURES = sorted((ROOT / "lectures").glob("[0-9]*.py"))


def test_there_are_lectures():
    assert len(LECTURES) >= 1


@pytest.mark.parametrize("lecture", LECTURES, ids=[p.stem for p in LECTURES])
def test_lecture_runs(lecture, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.syspath_prepend(str(ROOT / "lectures"))  # as `python lectures/NN_*.py` would, for _figures
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WHITEBOX_LECTURE_OUT", str(tmp_path))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace = runpy.run_path(str(lecture), run_name="__main__")
    for figure in namespace.get("FIGURES", []):
        figure = Path(figure)
        assert figure.is_file(), f"{lecture.name} did not write {figure}"
        assert figure.resolve().parent == tmp_path.resolve(), f"{figure} is not in WHITEBOX_LECTURE_OUT"
        assert figure.stat().st_size > 0, f"{figure} is empty"
    for written in tmp_path.rglob("*"):
        if written.is_file():
            assert written.stat().st_size > 0, f"{lecture.name} wrote an empty file {written}"
