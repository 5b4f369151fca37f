"""`sharpbench leaderboard reproduce` and the published builds: a reproduction exports the build its results come
from to LEADERBOARD/collections/NAME; another machine's reproduction installs that very build (the same manifest
and values) instead of building its own, and a different local build is refused with the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sharpbench.cli.main import main


def reproduce(root: Path, cards: Path) -> list[str]:
    return ["leaderboard", "reproduce", "--collection", "tiny-digits", "--measure", "param-norm", "--no-sweeps",
            "--leaderboard-dir", str(root), "--include-path", str(cards), "--no-progress"]


def values(root: Path) -> dict[str, float]:
    document = json.loads((root / "results" / "tiny-digits" / "param-norm.json").read_text(encoding="utf-8"))
    return {model: entry["value"] for model, entry in document["models"].items()}


def test_reproduce_exports_the_build_and_a_fresh_machine_installs_it(tiny_collection_card, tmp_path, monkeypatch,
                                                                     capsys):
    root = tmp_path / "leaderboard"
    monkeypatch.setenv("SHARPBENCH_HOME", str(tmp_path / "first"))
    assert main(reproduce(root, tiny_collection_card)) == 0
    folder = root / "collections" / "tiny-digits"
    built = tmp_path / "first" / "collections" / "tiny-digits" / "manifest.json"
    assert f"exported the build of 'tiny-digits' its results come from to {folder}" in capsys.readouterr().out
    assert (folder / "manifest.json").read_bytes() == built.read_bytes()
    first = values(root)

    monkeypatch.setenv("SHARPBENCH_HOME", str(tmp_path / "second"))        # another machine: nothing built
    assert main(reproduce(root, tiny_collection_card)) == 0
    captured = capsys.readouterr()
    assert "collection 'tiny-digits': installed the build its results were published on" in captured.err
    assert "exported the build" not in captured.out
    installed = tmp_path / "second" / "collections" / "tiny-digits" / "manifest.json"
    assert installed.read_bytes() == built.read_bytes() and values(root) == first

    manifest = json.loads(installed.read_text(encoding="utf-8"))
    manifest["build_time_seconds"] += 1.0              # the same card built again: a manifest with other bytes
    installed.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    assert main(reproduce(root, tiny_collection_card)) == 2
    err = capsys.readouterr().err
    assert "collection 'tiny-digits' built here (manifest sha256 " in err
    assert f"install that one with `sharpbench collection pull tiny-digits --from {folder}`" in err
    assert f"or remove {folder} to republish every result of 'tiny-digits' on the build here" in err
    assert "Traceback" not in err


def test_evaluate_installs_the_published_build_and_publishes_only_on_it(tiny_collection_card, tmp_path, monkeypatch,
                                                                        capsys):
    root = tmp_path / "leaderboard"
    monkeypatch.setenv("SHARPBENCH_HOME", str(tmp_path / "first"))
    assert main(reproduce(root, tiny_collection_card)) == 0
    published = (root / "results" / "tiny-digits" / "param-norm.json").read_bytes()
    capsys.readouterr()

    monkeypatch.setenv("SHARPBENCH_HOME", str(tmp_path / "second"))        # a new user: nothing built
    evaluate = ["evaluate", "--measure", "param-norm", "--collection", "tiny-digits", "--leaderboard-dir", str(root),
                "--include-path", str(tiny_collection_card), "--no-progress", "--json", str(tmp_path / "report.json")]
    assert main(evaluate) == 0
    err = capsys.readouterr().err
    assert "collection 'tiny-digits': installed the build its results were published on" in err
    assert "building it now" not in err
    installed = tmp_path / "second" / "collections" / "tiny-digits" / "manifest.json"
    assert installed.read_bytes() == (root / "collections" / "tiny-digits" / "manifest.json").read_bytes()
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert {model: entry["value"] for model, entry in report["models"].items()} == values(root)

    manifest = json.loads(installed.read_text(encoding="utf-8"))
    manifest["build_time_seconds"] += 1.0              # a build of one's own: evaluated, never published
    installed.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    assert main(evaluate) == 0
    assert "installed the build" not in capsys.readouterr().err
    assert main([*evaluate, "--publish"]) == 2
    err = capsys.readouterr().err
    assert "collection 'tiny-digits' built here (manifest sha256 " in err and "Traceback" not in err
    assert (root / "results" / "tiny-digits" / "param-norm.json").read_bytes() == published
