"""Structure of a Python tree: module sizes, import cycles (imports inside functions included) and private
names imported from another module. One problem per line; `make lint` and tests/test_structure.py run it.

    python tests/structure.py ROOT PACKAGE [PACKAGE ...] [--max-lines=N]
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

MAX_LINES = 400


def _modules(root: Path, packages: list[str]) -> dict[str, Path]:
    modules = {}
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    counter = 0
    for start in edges:
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def problems(root: Path, packages: list[str], max_lines: int = MAX_LINES) -> list[str]:
    """Every module over `max_lines`, every private name imported from another module, every import cycle."""
    root = root.resolve()
    modules = _modules(root, packages)
    found = []
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        text = path.read_text(encoding="utf-8")
        if (n := text.count("\n")) > max_lines:
            found.append(f"{path.relative_to(root)}: {n} lines (> {max_lines})")
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(text)):  # every import, those inside functions included
            if isinstance(node, ast.Import):
                for alias in node.names:
                    target = _resolve(alias.name, modules)
                    if target and target != mod:
                        edges[mod].add(target)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    name = ".".join(base + ([node.module] if node.module else []))
                else:
                    name = node.module or ""
                for alias in node.names:
                    full = f"{name}.{alias.name}"
                    target = _resolve(full, modules) if full in modules else _resolve(name, modules)
                    if not target or target == mod:
                        continue
                    edges[mod].add(target)
                    if alias.name.startswith("_") and not alias.name.startswith("__") and full not in modules:
                        found.append(f"{path.relative_to(root)}: imports private {alias.name} from {target}")
    for comp in _cycles(edges):
        # a package __init__ that re-exports its own submodules is not a cycle of design
        inits = [m for m in comp if modules[m].name == "__init__.py"]
        if len(comp) == 2 and inits and all(x == inits[0] or x.startswith(inits[0] + ".") for x in comp):
            continue
        found.append("import cycle: " + " <-> ".join(comp))
    return found


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    limit = int(next((a.split("=")[1] for a in sys.argv[1:] if a.startswith("--max-lines=")), MAX_LINES))
    lines = problems(Path(args[0]), args[1:], limit)
    print("\n".join(lines))
    sys.exit(1 if lines else 0)
