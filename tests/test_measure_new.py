"""`sharpbench measure new`: the scaffold runs as written (check passes, its unit test passes and can fail, evaluate
runs on a tiny collection), and a bad name or an existing file is refused with nothing written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sharpbench.cli.main import main


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def pytest_file(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(path)],
                          capture_output=True, text=True, timeout=300, cwd=path.parent)


@pytest.fixture(scope="module")
def scaffold(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("new-measure") / "mine"
    assert main(["measure", "new", "grad-norm.v2", "--path", str(root)]) == 0
    return root


def test_new_writes_a_card_an_implementation_and_a_test_and_says_what_to_type(capsys, tmp_path):
    code, out, err = run(capsys, "measure", "new", "my-measure", "--path", str(tmp_path))
    assert code == 0, err
    files = [tmp_path / "measures" / "my-measure.yaml", tmp_path / "measures" / "my_measure.py",
             tmp_path / "tests" / "test_my_measure.py"]
    assert all(path.is_file() for path in files)
    assert [line for line in out.splitlines() if line.startswith("wrote ")] == [f"wrote {path}" for path in files]
    assert f"  sharpbench measure check my-measure --include-path {tmp_path}" in out
    assert f"  pytest {files[2]}" in out
    assert f"  sharpbench evaluate --measure my-measure --include-path {tmp_path}" in out
    source = files[1].read_text(encoding="utf-8")
    assert "from sharpbench import MeasureContext" in source and "sharpbench." not in source.replace(
        "sharpbench measure new", "")


def test_the_new_measure_passes_measure_check(capsys, scaffold, tmp_path):
    report = tmp_path / "check.json"
    code, out, _ = run(capsys, "measure", "check", "grad-norm.v2", "--include-path", str(scaffold), "--no-progress",
                       "--json", str(report))
    assert code == 0, out
    assert "passed: every required property holds" in out


def test_the_generated_unit_test_passes_and_fails_when_the_measure_is_wrong(scaffold):
    test = scaffold / "tests" / "test_grad_norm_v2.py"
    assert pytest_file(test).returncode == 0
    module = scaffold / "measures" / "grad_norm_v2.py"
    original = module.read_text(encoding="utf-8")
    try:   # the mean over batches instead of over points: unequal batches tell them apart
        module.write_text(original.replace("* (len(labels) / count)", "/ len(context.batches)"), encoding="utf-8")
        assert module.read_text(encoding="utf-8") != original
        failed = pytest_file(test)
        assert failed.returncode == 1 and "2 failed" in failed.stdout
    finally:
        module.write_text(original, encoding="utf-8")


def test_the_new_measure_evaluates_on_a_tiny_collection(capsys, scaffold, tiny_collection_card):
    code, out, err = run(capsys, "evaluate", "--measure", "grad-norm.v2", "--collection", "tiny-digits",
                         "--include-path", str(scaffold), "--include-path", str(tiny_collection_card), "--no-progress")
    assert code == 0, err
    assert "grad-norm.v2 on tiny-digits: 6 models (p=2.0)" in out and "computed 6, reused 0" in out


@pytest.mark.parametrize("name", ["My-Measure", "_leading", "space in it", "ümlaut", ""])
def test_an_invalid_name_is_refused_and_nothing_is_written(capsys, tmp_path, name):
    code, out, err = run(capsys, "measure", "new", name, "--path", str(tmp_path / "out"))
    assert code == 2 and "is not allowed" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_an_existing_file_is_refused_and_nothing_is_written(capsys, tmp_path):
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_my_measure.py").write_text("# mine\n", encoding="utf-8")
    code, _, err = run(capsys, "measure", "new", "my-measure", "--path", str(tmp_path))
    assert code == 2 and "test_my_measure.py already exists; nothing was written" in err
    assert not (tmp_path / "measures").exists()
    assert (tmp_path / "tests" / "test_my_measure.py").read_text(encoding="utf-8") == "# mine\n"


def test_a_registered_name_is_refused(capsys, tmp_path):
    code, _, err = run(capsys, "measure", "new", "param-norm", "--path", str(tmp_path / "out"))
    assert code == 2 and "already registered" in err and not (tmp_path / "out").exists()
