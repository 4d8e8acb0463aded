"""The package's shape: no import loop (function-level imports included) and no file over 800
lines (docs/ARCHITECTURE.md: one concept per file)."""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "unispeech_jax"
MAX_LINES = 800


def _modules(package: pathlib.Path) -> dict[str, pathlib.Path]:
    """Dotted module name → file, for every .py file under `package`."""
    out = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _resolve(module: str, level: int, current: str, is_package: bool) -> str:
    """Absolute name of a (possibly relative) `from` import's module."""
    if not level:
        return module
    base = current.split(".")
    base = base[: len(base) - level + (1 if is_package else 0)]
    return ".".join(base + ([module] if module else []))


def import_graph(package: pathlib.Path = PACKAGE) -> dict[str, set[str]]:
    """module → the package modules it imports anywhere in its file (module level or inside
    functions). `from pkg import name` counts as importing pkg.name when that is a module, else
    pkg; a package's implicit import of its parents is not an edge."""
    modules = _modules(package)
    graph = {}
    for name, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(node.module or "", node.level, name, path.name == "__init__.py")
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    for alias in node.names
                ]
            else:
                continue
            edges.update(t for t in targets if t in modules and t != name)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import loop [a, b, ..., a] of `graph`, or None (iterative depth-first search)."""
    state = {}  # 1 on the current path, 2 finished
    for root in sorted(graph):
        if root in state:
            continue
        path, stack = [root], [iter(sorted(graph[root]))]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def test_find_cycle_reports_a_loop_and_accepts_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_import_graph_sees_every_kind_of_import(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg.sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("from . import b\nfrom .b import name\n")
    (pkg / "sub" / "b.py").write_text("import pkg.a\nname = 1\n")
    graph = import_graph(pkg)
    assert graph == {
        "pkg": set(),
        "pkg.a": {"pkg.sub.b"},  # function level
        "pkg.sub": {"pkg.sub.b"},  # relative
        "pkg.sub.b": {"pkg.a"},
    }
    assert find_cycle(graph) == ["pkg.a", "pkg.sub.b", "pkg.a"]


def test_package_has_no_import_loop():
    assert find_cycle(import_graph()) is None


def test_no_file_over_800_lines():
    long = {
        str(p.relative_to(PACKAGE.parent)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}
