"""The sha256 that pins a measure's code in every stored value's key: its module's bytes and those of every module
of the same package that it imports, directly or through another, so that an edit to shared code (a helper
module beside the measure) recomputes the values that depend on it."""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path


def source_sha256(source: Path, module_name: str) -> str:
    """sha256 of the module file's bytes where it imports no module of its own package (so the key of a
    self-contained module is the hash of its file); else of its bytes and, in name order, each such module's name
    and bytes. Modules outside the package are not hashed: the installed libraries are pinned by the project."""
    package = module_name.partition(".")[0]
    folder = _package_folder(source, module_name)
    siblings = _package_imports(source, module_name, package, folder) if folder is not None else {}
    siblings.pop(module_name, None)
    if not siblings:
        return hashlib.sha256(source.read_bytes()).hexdigest()
    digest = hashlib.sha256(source.read_bytes())
    for name in sorted(siblings):
        digest.update(b"\0" + name.encode() + b"\0" + siblings[name].read_bytes())
    return digest.hexdigest()


def _package_folder(source: Path, module_name: str) -> Path | None:
    """The top-level package's folder, whatever it is named on disk (the in-tree measures are the package
    sharpbench_measures in the folder measures/); None for a top-level module, which has no siblings."""
    depth = module_name.count(".") + (source.name == "__init__.py")
    return source.parents[depth - 1] if depth else None


def _package_imports(source: Path, module_name: str, package: str, folder: Path) -> dict[str, Path]:
    """Every module of `package` that `source` imports, transitively (itself included), by name."""
    found: dict[str, Path] = {module_name: source}
    pending = [(module_name, source)]
    while pending:
        name, path = pending.pop()
        for imported in _imported_names(path, name):
            if imported.partition(".")[0] != package or imported in found:
                continue
            file = _module_file(folder, imported)
            if file is not None:
                found[imported] = file
                pending.append((imported, file))
    return found


def _imported_names(path: Path, module_name: str) -> set[str]:
    """The dotted names a file imports, relative imports resolved, with `from a import b` giving both a and a.b
    (b may be a submodule); lazy imports inside functions count too."""
    tree = ast.parse(path.read_bytes(), filename=str(path))
    is_package = path.name == "__init__.py"
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module_name.split(".")
                anchor = parts[:len(parts) - node.level + is_package]
                base = ".".join(anchor + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _module_file(folder: Path, name: str) -> Path | None:
    """The source file of a dotted module name of the package in `folder`, or None where it names no module (an
    attribute, or the package itself, whose __init__ is skipped: it only re-exports)."""
    parts = name.split(".")[1:]
    if not parts:
        return None
    path = folder.joinpath(*parts)
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None
