"""Errors carry their fix as a structured hint: the library words it neutrally, the CLI renders the command."""

from __future__ import annotations

import pickle
import typing

import pytest

from sharpbench.cards.discovery import Registry
from sharpbench.cli.main import HINT_COMMANDS, main, render_error, render_hint
from sharpbench.errors import CollectionError, Hint, HintAction, SharpbenchError, UnknownNameError


def test_every_hint_action_has_a_neutral_sentence_and_a_command():
    actions = typing.get_args(HintAction)
    assert set(HINT_COMMANDS) == set(actions)
    for action in actions:
        hint = Hint(action, collection="tiny", kind="measures", measure="param-norm")
        assert "sharpbench" not in hint.describe() and "--" not in hint.describe(), action
        assert render_hint(hint) != hint.describe(), action
    assert render_hint(Hint("list", kind="collections")) == "Run `sharpbench list collections` to see all."


def test_a_library_error_names_no_command_and_the_cli_renders_the_exact_one():
    with pytest.raises(UnknownNameError) as caught:
        Registry.discover().measure("param-nrom")
    error = caught.value
    assert "Did you mean: param-norm, path-norm?" in str(error) and "sharpbench" not in str(error)
    assert error.hints == (Hint("list", kind="measures"), Hint("include_path"))
    rendered = render_error(error)
    assert rendered.startswith("unknown measure 'param-nrom'. Did you mean: param-norm, path-norm?")
    assert "Run `sharpbench list measures` to see all." in rendered
    assert "Pass --include-path DIR to load cards of your own." in rendered


def test_a_collection_hint_renders_the_rebuild_command_with_its_name():
    error = CollectionError("tiny: checkpoint m1 fails its sha256 check.", hints=[Hint("rebuild", collection="tiny")])
    assert str(error) == "tiny: checkpoint m1 fails its sha256 check. Rebuild collection 'tiny' from scratch " \
                         "(build with force)."
    assert render_error(error) == "tiny: checkpoint m1 fails its sha256 check. Rebuild with `sharpbench collection " \
                                  "build tiny --force`."


def test_an_error_without_hints_renders_as_its_text():
    assert render_error(SharpbenchError("plain")) == "plain" == str(SharpbenchError("plain"))


def test_hints_survive_pickling_as_from_a_worker_process():
    error = CollectionError("broken", hints=[Hint("build", collection="tiny")])
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is CollectionError and copy.hints == error.hints and str(copy) == str(error)
    assert render_error(copy) == "broken Run `sharpbench collection build tiny`."


def test_the_cli_prints_a_missing_leaderboard_as_one_line_naming_the_command(capsys, tmp_path):
    code = main(["leaderboard", "build", "--leaderboard-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"{tmp_path / 'results'}: no results folder." in err
    assert "`sharpbench evaluate --measure NAME --publish`" in err and "--leaderboard-dir DIR" in err
