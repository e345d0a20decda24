"""`worldsim export --overwrite` replaces an earlier export and nothing else: never the checkpoint, a folder
holding it, or a folder with files the export did not write."""

import shutil

import pytest

from worldsim.backends.export import MANIFEST_FILE, STEP_FILE
from worldsim.cli import main


def export(checkpoint, out, *flags: str) -> int:
    return main(["export", "--checkpoint", str(checkpoint), "--out", str(out), "--no-verify", *flags])


@pytest.fixture
def checkpoint(tiny_checkpoint, tmp_path):
    """A copy of the tiny checkpoint in tmp_path/runs/ckpt, so the test may aim --out at it and its folders."""
    path = tmp_path / "runs" / "ckpt"
    shutil.copytree(tiny_checkpoint, path)
    return path


def contents(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("target", ["ckpt", "runs", "."])
def test_overwrite_never_deletes_the_checkpoint_or_a_folder_holding_it(checkpoint, tmp_path, capsys, target):
    before = contents(tmp_path)
    out = {"ckpt": checkpoint, "runs": checkpoint.parent, ".": tmp_path}[target]
    assert export(checkpoint, out, "--overwrite") == 2
    err = capsys.readouterr().err
    assert "is the checkpoint's folder or holds it" in err and err.count("\n") == 1
    assert contents(tmp_path) == before


def test_overwrite_refuses_a_folder_that_is_not_an_export(checkpoint, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    assert export(checkpoint, out, "--overwrite") == 2
    assert "is not an earlier export" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "precious"
    (out / "plain-file").write_text("x")
    assert export(checkpoint, out / "plain-file", "--overwrite") == 2
    assert "exists and is not a folder" in capsys.readouterr().err


def test_overwrite_replaces_an_earlier_export_but_not_files_added_to_it(checkpoint, tmp_path, capsys):
    out = tmp_path / "onnx"
    assert export(checkpoint, out) == 0
    first = out.stat().st_ino
    assert export(checkpoint, out, "--overwrite") == 0
    assert (out / MANIFEST_FILE).exists() and out.stat().st_ino != first  # a new folder swapped in
    (out / "notes.txt").write_text("precious")
    capsys.readouterr()
    assert export(checkpoint, out, "--overwrite") == 2
    assert "holds files an export did not write (notes.txt)" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "precious" and (out / STEP_FILE).exists()
