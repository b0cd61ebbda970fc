"""The layout reads top-down: no import cycle inside ``whitebox``, argparse only in ``whitebox.cli``,
matplotlib only inside the functions of ``whitebox.figures``, and ``whitebox --help`` without matplotlib."""

import ast
import subprocess
import sys
from pathlib import Path

import whitebox

PACKAGE = Path(whitebox.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def top_level_imports(path: Path) -> tuple[set[str], list[ast.AST]]:
    """The whitebox modules that ``path`` imports at module level, and its function-level import nodes."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found, local = set(), []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if node not in tree.body and not any(node in getattr(n, "body", []) for n in tree.body
                                             if isinstance(n, (ast.If, ast.Try))):
            local.append(node)
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("whitebox")}
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base.startswith("whitebox"):
                found.add(base)
                found |= {f"{base}.{a.name}" for a in node.names}
    return found, local


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges = {}
    for name, path in modules.items():
        imported, _ = top_level_imports(path)
        edges[name] = {m for m in imported if m in modules and m != name}
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_whitebox():
    edges = graph()
    assert len(edges) > 40 and "whitebox.train" in edges["whitebox.cli.train"]
    assert find_cycle(edges) is None, " -> ".join(find_cycle(edges))


def imported_names(node) -> list[str]:
    return [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]


def test_argparse_only_in_the_cli_and_matplotlib_only_inside_figure_functions():
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        name = module_name(path)
        imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
        if not name.startswith("whitebox.cli"):
            assert not any("argparse" in imported_names(n) for n in imports), name
        plotting = [n for n in imports if any(m.startswith("matplotlib") for m in imported_names(n))]
        if name == "whitebox.figures":
            assert plotting and not any(n in tree.body for n in plotting)  # inside functions only
        else:
            assert not plotting, f"{name} imports matplotlib: drawings belong in whitebox.figures"


def test_help_does_not_import_matplotlib():
    code = ("import sys\nfrom whitebox.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
