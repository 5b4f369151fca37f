"""The documentation is true to the code: README.md and docs/*.md.

- Every ```bash / ```sh / ```console block: each `sharpbench ...` command parses with the CLI's own parser and
  names only registered measures and collections (with its `--set` and `--sweep` checked against the card); the
  cheap, read-only ones (`list`, `--help`, `leaderboard build` into a copy of leaderboard/) also run and exit 0.
  Expensive ones (building real collections, evaluating over them, pulls, imports) are parsed and resolved only.
  A `pip install` that installs torch names the versions `.ci/run` pins; `pytest` and `bash` name files that
  exist; any other command must be one of a few known ones, so a misspelt `sharpbnech` fails too.
- Every ```yaml block is a card, loaded with the real loaders (measure card: `name:` and `function:`;
  collection card: `dataset:`), or a base card (a `# path/_name.yaml` first line), or marked
  `<!-- fragment -->` on the line before it. A block whose first line is `# some/path.ext` is written to that
  path in an example tree first, so the examples of a folder (a card beside its `file.py`, a card over its
  base) load together; `DIR` in a command is that tree's `DIR`.
  A measure card beside its own `file.py` is also computed on a tiny MLP; a card over a base (`include:`) loads
  with its base.
- Every ```python block compiles; one marked `<!-- runnable -->` runs.
- The front page's leaderboard table has the cells of leaderboard/README.md for the same measures.
- Relative links (and their #anchors) between the pages and to repository files resolve, and the repository
  paths a page names in inline code exist (docs/architecture.md, a target layout, excepted).
- Every flag of the parser is documented in docs/cli.md and every flag docs/cli.md names exists; every
  registered measure, collection, card field and registry kind is named on its page.
- README.md stays a front page: at most README_MAX_LINES lines.

The checks are functions that return a list of problems, and test_checks_can_fail feeds them known mistakes.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import shlex
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 260
SHELL_LANGS = {"bash", "sh", "shell", "console"}
# Commands a shell block may use besides sharpbench, pip, pytest and bash; anything else is taken for a typo.
OTHER_COMMANDS = {".", "source", "cd", "export", "awk", "python", "python3", "for", "done", "nice", "mkdir"}
SHELL_KEYWORDS = {"do", "then", "else", "time"}


# --- the project's entry points, in one place: when a module moves, this is the only edit -------------------

def build_parser() -> argparse.ArgumentParser:
    from sharpbench.cli.main import build_parser as build
    return build()


def cli_main(argv: list[str]) -> int:
    from sharpbench.cli.main import main
    return main(argv)


def load_measure_card(path: Path) -> Any:
    from sharpbench.cards.measure_card import load_measure_spec
    return load_measure_spec(path)


def load_collection_card(path: Path) -> Any:
    from sharpbench.collection.spec import load_collection_spec
    return load_collection_spec(path)


def discover(include_paths: tuple[str, ...]) -> Any:
    from sharpbench.cards.discovery import Registry
    return Registry.discover(include_paths)


def card_error() -> type[Exception]:
    from sharpbench.errors import CardError
    return CardError


def user_error() -> type[Exception]:
    from sharpbench.errors import SharpbenchError
    return SharpbenchError


def card_fields() -> tuple[set[str], set[str]]:
    """The top-level fields of a measure card and of a collection card, as the loaders accept them."""
    from sharpbench.cards import measure_card as measure_module
    from sharpbench.collection import spec as collection_module
    return set(measure_module._CARD_SCHEMA), set(collection_module._CARD_FIELDS)


def registry_kinds() -> dict[str, Iterable[str]]:
    """The kinds a collection card may name: datasets, shifts, architectures, recipe fields."""
    from sharpbench.data.registry import DATASETS, SHIFTS
    from sharpbench.models.registry import ARCHITECTURES
    from sharpbench.training.recipe import RECIPE_PARAMS
    return {"dataset": DATASETS, "shift": SHIFTS, "architecture": ARCHITECTURES, "recipe field": RECIPE_PARAMS}


def compute_measure(name: str, include_paths: list[str]) -> float:
    """A measure of an example on a tiny MLP (the cheap end-to-end check of a card beside its file)."""
    import torch
    import sharpbench

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    batches = [(torch.randn(16, 4), torch.randint(0, 3, (16,)))]
    return sharpbench.compute_measure(name, model, batches, include_paths=include_paths)


# --- reading the pages ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Block:
    """One fenced code block: where it is, its language, its text and the marks (`<!-- word -->`) before it."""

    doc: Path
    line: int
    lang: str
    text: str
    marks: frozenset[str]

    @property
    def id(self) -> str:
        return f"{self.doc.relative_to(ROOT).as_posix()}:{self.line}"

    @property
    def example_path(self) -> str | None:
        """`some/path.ext` when the block's first line is a comment `# some/path.ext ...`."""
        first = self.text.split("\n", 1)[0]
        found = re.match(r"#\s+([\w./-]+\.(?:py|ya?ml|csv))(\s|$)", first)
        return found.group(1) if found else None


_FENCE = re.compile(r"^(`{3,}|~{3,})\s*([\w+-]*)")
_MARK = re.compile(r"^<!--\s*([\w-]+)\s*-->$")


def fenced_blocks(doc: Path, text: str | None = None) -> list[Block]:
    lines = (doc.read_text(encoding="utf-8") if text is None else text).split("\n")
    blocks, i = [], 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, lang, start = opening.group(1), opening.group(2).lower(), i
        marks, j = set(), i - 1
        while j >= 0 and (not lines[j].strip() or _MARK.match(lines[j].strip())):
            if lines[j].strip():
                marks.add(_MARK.match(lines[j].strip()).group(1))
            j -= 1
        i += 1
        body = []
        while i < len(lines) and not lines[i].startswith(fence):
            body.append(lines[i])
            i += 1
        blocks.append(Block(doc, start + 1, lang, "\n".join(body), frozenset(marks)))
        i += 1
    return blocks


def all_blocks(langs: set[str]) -> list[Block]:
    return [block for doc in DOC_FILES for block in fenced_blocks(doc) if block.lang in langs]


# --- commands ------------------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def pinned_torch() -> dict[str, str]:
    """{'torch': 'torch==X', 'torchvision': 'torchvision==Y'} as .ci/run installs them."""
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    pins = dict(re.findall(r"\b((?:torch|torchvision))==(\S+)", ci))
    assert set(pins) == {"torch", "torchvision"}, ".ci/run should pin torch and torchvision"
    return {name: f"{name}=={version}" for name, version in pins.items()}


def shell_commands(text: str, console: bool = False) -> list[list[str]]:
    """The simple commands of a shell block: continuations joined, comments dropped, split at && || | ; ( )."""
    commands = []
    for line in text.replace("\\\n", " ").split("\n"):
        if console:
            if not line.startswith("$ "):
                continue
            line = line[2:]
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        current: list[str] = []
        for token in list(lexer) + [";"]:
            if token and set(token) <= set("();<>|&"):
                if current:
                    commands.append(current)
                current = []
            else:
                current.append(token)
    return commands


@dataclass
class CommandContext:
    """What checking commands needs: the example tree (for DIR) and, when commands may run, where to run them."""

    example_root: Path
    run_dir: Path | None = None   # None: parse and resolve only


def check_shell_block(text: str, context: CommandContext, console: bool = False) -> list[str]:
    problems = []
    for argv in shell_commands(text, console):
        while argv and (argv[0] in SHELL_KEYWORDS or re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", argv[0])):
            argv = argv[1:]
        if not argv:
            continue
        head, where = argv[0], " ".join(argv)
        if head == "sharpbench":
            problems += [f"`{where}`: {problem}" for problem in check_sharpbench(argv[1:], context)]
        elif head == "pip" or (head in ("python", "python3") and argv[1:3] == ["-m", "pip"]):
            problems += [f"`{where}`: {problem}" for problem in check_pip(argv[argv.index("install") + 1:]
                                                                            if "install" in argv else [])]
        elif head == "pytest" or (head in ("python", "python3") and argv[1:3] == ["-m", "pytest"]):
            args = argv[1:] if head == "pytest" else argv[3:]
            problems += [f"`{where}`: no such path {arg}" for arg in args
                         if not arg.startswith("-") and "/" in arg and not (ROOT / arg.split("::")[0]).exists()]
        elif head == "bash":
            if len(argv) < 2 or not (ROOT / argv[1]).is_file():
                problems.append(f"`{where}`: no such script {argv[1:2]}")
        elif head not in OTHER_COMMANDS:
            problems.append(f"`{where}`: unknown command {head!r} (a typo? if not, add it to OTHER_COMMANDS)")
    return problems


def check_pip(args: list[str]) -> list[str]:
    problems = []
    for arg in args:
        name = re.split(r"[=<>!~\[ ]", arg, maxsplit=1)[0].lower()
        if name in pinned_torch() and arg != pinned_torch()[name]:
            problems.append(f"installs {arg!r}, but .ci/run pins {pinned_torch()[name]!r}")
    return problems


def _include_paths(values: list[str], context: CommandContext) -> tuple[str, ...]:
    return tuple(str(context.example_root / value) if value == "DIR" or value.startswith("DIR/") else value
                 for value in values)


def check_sharpbench(argv: list[str], context: CommandContext) -> list[str]:
    """Parse with the CLI's parser, resolve the names it gives, and run it when it is cheap and read-only."""
    wants_help = "-h" in argv or "--help" in argv
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            args = build_parser().parse_args(argv)
    except SystemExit as stop:
        if wants_help and stop.code == 0:
            return _run(argv, context)
        return [f"does not parse: {stderr.getvalue().strip().splitlines()[-1:]}"]
    unknown = [arg for arg in argv if arg.startswith("--") and arg.split("=")[0] not in parser_options()]
    if unknown:   # argparse takes a prefix of a flag (--worker for --workers); a page spells flags out
        return [f"not a flag of sharpbench (spell it out): {unknown}"]
    include = _include_paths(getattr(args, "include_path", []), context)
    try:
        registry = _registry(include)
    except user_error() as error:
        return [f"cards: {error}"]
    problems = []
    names = []
    if args.command == "evaluate":
        names = [("measure", args.measure), ("collection", args.collection)]
    elif args.command == "collection" and args.action in ("build", "pull"):
        names = [("collection", args.name)]
    elif args.command == "measure" and args.action == "check":
        names = [("measure", args.name)]
    for kind, name in names:
        if "$" in name:   # a shell variable, e.g. a loop over `sharpbench list measures`
            continue
        if name not in getattr(registry, kind + "s"):
            problems.append(f"no registered {kind} {name!r}")
    if args.command == "evaluate" and not problems and "$" not in args.measure:
        problems += _check_parameters(registry.measures[args.measure], args)
    if not problems and _cheap(args):
        problems += _run(argv, context)
    return problems


@lru_cache(maxsize=1)
def parser_options() -> frozenset[str]:
    """Every --flag of every subcommand."""
    def walk(parser: argparse.ArgumentParser) -> set[str]:
        options = set()
        for action in parser._actions:
            options.update(option for option in action.option_strings if option.startswith("--"))
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    options |= walk(sub)
        return options
    return frozenset(walk(build_parser()))


@lru_cache(maxsize=None)
def _registry(include: tuple[str, ...]) -> Any:
    return discover(include)


def _check_parameters(spec: Any, args: argparse.Namespace) -> list[str]:
    problems = []
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = value
    try:
        spec.bind(overrides)
    except user_error() as error:
        problems.append(f"--set: {error}")
    if args.sweep:
        name, _, raw = args.sweep.partition("=")
        if name not in spec.params:
            problems.append(f"--sweep: measure {spec.name!r} has no parameter {name!r}")
        elif raw not in spec.grids.get(name, {}):
            try:
                for value in raw.split(","):
                    spec.bind({name: value})
            except user_error() as error:
                problems.append(f"--sweep: {error} (and {raw!r} is not a grid of the card)")
    return problems


def _cheap(args: argparse.Namespace) -> bool:
    """The allow-list of commands the test runs: read-only listings and the leaderboard into a copy."""
    return args.command == "list" or (args.command == "leaderboard" and args.action == "build")


_RAN: set[tuple[str, ...]] = set()   # cheap commands that ran and exited 0: not run again for another page


def _run(argv: list[str], context: CommandContext) -> list[str]:
    if context.run_dir is None or tuple(argv) in _RAN:
        return []
    key, argv = tuple(argv), list(argv)
    if "--leaderboard-dir" in argv:
        argv[argv.index("--leaderboard-dir") + 1] = str(context.run_dir / "leaderboard")
    if "--include-path" in argv:
        for i, value in enumerate(argv):
            if i and argv[i - 1] == "--include-path":
                argv[i] = _include_paths([value], context)[0]
    out, err = io.StringIO(), io.StringIO()
    with _chdir(context.run_dir), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli_main(argv)
        except SystemExit as stop:
            code = stop.code
    if code == 0:
        _RAN.add(key)
        return []
    return [f"ran with exit status {code}: {err.getvalue().strip()[-500:]}"]


@contextlib.contextmanager
def _chdir(path: Path):  # contextlib.chdir is Python 3.11+
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


# --- cards ---------------------------------------------------------------------------------------------------

def card_kind(data: Any, path: str | None = None) -> str | None:
    """'measure', 'collection' or None; a card over a base (`include:`) is known by its folder."""
    if isinstance(data, dict) and "include" in data and path:
        folder = Path(path).parent.name
        return {"measures": "measure", "collections": "collection"}.get(folder)
    if isinstance(data, dict) and "name" in data and "function" in data:
        return "measure"
    if isinstance(data, dict) and "dataset" in data:
        return "collection"
    return None


def write_example_tree(root: Path, blocks: Iterable[Block]) -> None:
    """Write every block that names its path (`# some/path.ext` first line) under root."""
    for block in blocks:
        if block.example_path:
            path = root / block.example_path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block.text + "\n", encoding="utf-8")


def check_card_block(block: Block, example_root: Path, scratch: Path) -> list[str]:
    """Load a YAML block with the real loader; problems as text."""
    try:
        data = yaml.safe_load(block.text)
    except yaml.YAMLError as error:
        return [f"not valid YAML: {error}"]
    kind = card_kind(data, block.example_path)
    name = Path(block.example_path or "").name
    if kind is None:
        if name.startswith("_"):
            return []   # a base card: loaded through the cards that include it
        return ["a YAML block that is neither a measure card (name: and function:) nor a collection card "
                "(dataset:) nor a base (# folder/_name.yaml); mark a fragment with <!-- fragment --> before it"]
    if block.example_path:
        path = example_root / block.example_path
    else:
        path = scratch / f"{kind}s" / f"{data.get('name', 'card')}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(block.text + "\n", encoding="utf-8")
    try:
        spec = load_measure_card(path) if kind == "measure" else load_collection_card(path)
        if kind == "measure":
            spec.implementation()   # the function it names exists and imports
    except card_error() as error:
        return [f"the {kind} card does not load: {error}"]
    if kind == "measure" and spec.function.split(":")[0].endswith(".py"):
        value = compute_measure(spec.name, [str(path.parent.parent)])
        if not isinstance(value, float):
            return [f"{spec.name} returned {value!r} on a tiny MLP"]
    return []


# --- links ---------------------------------------------------------------------------------------------------

def heading_anchors(text: str) -> set[str]:
    """GitHub's anchors of a page: each heading's slug (lower case, punctuation dropped, spaces to '-'), and
    explicit <a id="..."> anchors."""
    anchors, seen = set(), {}
    prose = re.sub(r"^(`{3,}|~{3,}).*?^\1[ \t]*$", "", text, flags=re.S | re.M)
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", prose, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    anchors.update(re.findall(r"<a\s+(?:id|name)=\"([^\"]+)\"", text))
    return anchors


def check_links(doc: Path, text: str | None = None) -> list[str]:
    text = doc.read_text(encoding="utf-8") if text is None else text
    problems = []
    for target in re.findall(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", without_code_blocks(text)):
        if re.match(r"^[a-z]+:", target):
            continue   # http(s), mailto: not checked offline
        path_part, _, anchor = target.partition("#")
        path = (doc.parent / path_part).resolve() if path_part else doc
        if not path.exists():
            problems.append(f"link to {target}: no such file {path}")
            continue
        if ROOT not in path.parents and path != ROOT:
            problems.append(f"link to {target}: outside the repository")
        elif anchor and path.suffix == ".md" and anchor not in heading_anchors(path.read_text(encoding="utf-8")):
            problems.append(f"link to {target}: no heading #{anchor} in {path.relative_to(ROOT)}")
    return problems


def without_code_blocks(text: str) -> str:
    return re.sub(r"^(`{3,}|~{3,}).*?^\1[ \t]*$", "", text, flags=re.S | re.M)


# --- the tests -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def example_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("doc-examples")
    write_example_tree(root, all_blocks({"yaml", "yml", "python", "py"}))
    return root


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """Where cheap commands run: a copy of one collection's published results, so that `leaderboard build` changes
    nothing and stays quick (tests/test_leaderboard.py checks the whole published build)."""
    results = tmp_path / "leaderboard" / "results"
    shutil.copytree(ROOT / "leaderboard" / "results" / "diag-linear-nets", results / "diag-linear-nets")
    return tmp_path


SHELL_BLOCKS = all_blocks(SHELL_LANGS)


def test_pages_exist_and_have_commands() -> None:
    names = {doc.relative_to(ROOT).as_posix() for doc in DOC_FILES}
    for page in ("measures", "collections", "scoring", "cli", "contributing", "architecture", "benchmarks"):
        assert f"docs/{page}.md" in names
    assert len(SHELL_BLOCKS) >= 10 and all_blocks({"yaml"})


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=lambda block: block.id)
def test_shell_block(block: Block, example_root: Path, run_dir: Path) -> None:
    problems = check_shell_block(block.text, CommandContext(example_root, run_dir), console=block.lang == "console")
    assert not problems, f"{block.id}:\n" + "\n".join(problems)


@pytest.mark.parametrize("block", [b for b in all_blocks({"yaml", "yml"}) if "fragment" not in b.marks],
                         ids=lambda block: block.id)
def test_yaml_block(block: Block, example_root: Path, tmp_path: Path) -> None:
    problems = check_card_block(block, example_root, tmp_path)
    assert not problems, f"{block.id}:\n" + "\n".join(problems)


@pytest.mark.parametrize("block", all_blocks({"python", "py"}), ids=lambda block: block.id)
def test_python_block(block: Block) -> None:
    code = compile(block.text, block.id, "exec")
    if "runnable" in block.marks:
        exec(code, {"__name__": "__doc_example__"})


@pytest.mark.parametrize("doc", DOC_FILES, ids=lambda doc: doc.relative_to(ROOT).as_posix())
def test_links_resolve(doc: Path) -> None:
    problems = check_links(doc)
    assert not problems, "\n".join(problems)


def named_paths(text: str) -> list[str]:
    """Repository paths a page names in inline code (`sharpbench/...`, `tests/...`, ...), placeholders left out."""
    spans = re.findall(r"`([^`\n]+)`", without_code_blocks(text))
    paths = [found.rstrip(".,:;") for span in spans
             for found in re.findall(r"(?<![\w$/.])((?:sharpbench|measures|registry|tests|leaderboard|docs)/[\w./*-]*)", span)]
    return [path for path in paths if not re.search(r"[A-Z*<]", path)]


@pytest.mark.parametrize("doc", [doc for doc in DOC_FILES if doc.name != "architecture.md"],   # a target layout
                         ids=lambda doc: doc.relative_to(ROOT).as_posix())
def test_named_paths_exist(doc: Path) -> None:
    missing = [path for path in named_paths(doc.read_text(encoding="utf-8")) if not (ROOT / path).exists()]
    assert not missing, f"{doc.relative_to(ROOT)} names paths that do not exist: {missing}"


def markdown_table(text: str, after_heading: str) -> list[dict[str, str]]:
    """The first table after a heading, as rows of {header: cell}."""
    section = text.split(after_heading, 1)[1]
    lines = [line for line in section.split("\n\n|", 1)[1].split("\n\n", 1)[0].split("\n")]
    lines[0] = "|" + lines[0]
    cells = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines]
    return [dict(zip(cells[0], row)) for row in cells[2:]]


def test_readme_leaderboard_numbers_are_the_published_ones() -> None:
    """The front page's table is copied from leaderboard/README.md: same measure, same cells."""
    front = markdown_table((ROOT / "README.md").read_text(encoding="utf-8"), "## The leaderboard at a glance")
    published = {row["measure"]: row for row in markdown_table(
        (ROOT / "leaderboard" / "README.md").read_text(encoding="utf-8"), "## digits-mlp\n")}
    assert front
    for row in front:
        assert row["measure"] in published, f"{row['measure']} is not on the published digits-mlp table"
        differ = {header: (cell, published[row["measure"]].get(header)) for header, cell in row.items()
                  if published[row["measure"]].get(header) != cell}
        assert not differ, f"README.md's {row['measure']} row differs from leaderboard/README.md: {differ}"


def test_readme_is_a_front_page() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move reference text to docs/"


def test_cli_page_names_every_flag_and_only_real_ones() -> None:
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    options = parser_options()
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text))
    assert not options - named, f"flags missing from docs/cli.md: {sorted(options - named)}"
    assert not named - options, f"docs/cli.md names flags the parser lacks: {sorted(named - options)}"


def test_pages_name_every_registered_thing() -> None:
    registry = _registry(())
    measures = (ROOT / "docs" / "measures.md").read_text(encoding="utf-8")
    collections = (ROOT / "docs" / "collections.md").read_text(encoding="utf-8")
    missing = [f"measure {name}" for name in registry.measures if f"`{name}`" not in measures]
    missing += [f"collection {name}" for name in registry.collections if f"`{name}`" not in collections]
    measure_fields, collection_fields = card_fields()
    missing += [f"measure card field {name}" for name in measure_fields if f"`{name}`" not in measures]
    missing += [f"collection card field {name}" for name in collection_fields if f"`{name}`" not in collections]
    for kind, names in registry_kinds().items():
        missing += [f"{kind} {name}" for name in names if f"`{name}`" not in collections]
    from sharpbench.scoring.metrics import METRICS
    scoring = (ROOT / "docs" / "scoring.md").read_text(encoding="utf-8")
    missing += [f"metric {name}" for name in METRICS if f"`{name}`" not in scoring]
    assert not missing, "not documented: " + ", ".join(missing)


def test_checks_can_fail(example_root: Path, tmp_path: Path) -> None:
    """Known mistakes are caught: each of these must give at least one problem."""
    context = CommandContext(example_root)
    mistakes = [
        "sharpbench evaluate --measure sharpness-worst-linf-adaptive --rhoo 0.001",       # misspelt flag
        "sharpbench evaluate --measure sharpness-worst-linf-adaptiv",                       # misspelt measure
        "sharpbench evaluate --measure param-norm --collection digits-mpl",                 # misspelt collection
        "sharpbench evaluate --measure sharpness-worst-linf-adaptive --set rhoo=0.001",     # unknown parameter
        "sharpbench evaluate --measure sharpness-worst-linf-adaptive --sweep rho=resnet-cifar",  # unknown grid
        "sharpbench collection build digits-mlp --worker 2",                                # misspelt flag
        "sharpbench lists measures",                                                        # unknown subcommand
        "sharpbnech list measures",                                                         # unknown command
        "pip install torch==2.1.0 torchvision",                                             # not the pinned torch
        "pytest tests/test_no_such_file.py",                                                # missing test file
        "sharpbench evaluate --measure output-norm --include-path NO_SUCH_DIR",             # missing folder
        "sharpbench measure check param-nrom",                                              # misspelt measure
        "sharpbench measure new my-measure --paht DIR",                                     # misspelt flag
    ]
    for mistake in mistakes:
        assert check_shell_block(mistake, context), f"not caught: {mistake}"
    assert not check_shell_block("sharpbench evaluate --measure output-norm --include-path DIR --set power=1",
                                 context)
    page = ROOT / "docs" / "example.md"
    assert check_links(page, "[a](measures.md#no-such-heading) [b](no-such-page.md)")
    assert not check_links(page, "[a](measures.md#measure-cards) [b](../README.md)")
    bad_card = Block(page, 1, "yaml", "name: param-norm\nfunction: sharpbench_measures.norms:param_norm\n"
                                      "higher_means: worse\ndescription: x\nsource: y\nrho: 1\n", frozenset())
    assert check_card_block(bad_card, example_root, tmp_path)
    assert check_card_block(Block(page, 1, "yaml", "just: a mapping\n", frozenset()), example_root, tmp_path)
    assert named_paths("see `sharpbench/ascent.py` and `registry/measures/NAME.yaml`") == ["sharpbench/ascent.py"]
    marks = fenced_blocks(page, "<!-- runnable -->\n```python\nx = 1\n```\n")
    assert marks[0].marks == {"runnable"} and marks[0].text == "x = 1"
