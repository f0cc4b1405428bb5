"""Size and shape of the package's code: what a restructure is measured by.

``python benchmarks/code_metrics.py [ROOT]`` prints, for the ``dmft`` package under ROOT
(default: this checkout):

- modules and their line counts (every module over 450 lines is listed);
- functions longer than 80 lines (nested functions count on their own);
- import cycles between modules (imports inside functions included: a cycle there is still two
  modules that each need the other);
- imports of another package's private names (``from ..solver._step import x`` outside
  ``dmft/solver``), the "reaching in" that makes a module hard to move.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

LONG_MODULE = 450
LONG_FUNCTION = 80


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def resolve(current: str, is_pkg: bool, node: ast.ImportFrom) -> list[str]:
    if node.level == 0:
        base = node.module or ""
        if not base.startswith("dmft"):
            return []
    else:
        parts = current.split(".")
        if not is_pkg:
            parts = parts[:-1]
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join(parts + ([node.module] if node.module else []))
    names = [base]
    if node.module is None or node.level:
        names += [f"{base}.{a.name}" for a in node.names]
    return names


def analyse(root: Path):
    pkg = root / "dmft"
    files = sorted(pkg.rglob("*.py"))
    mods = {module_name(f, root): f for f in files}
    lines, long_fns, graph, reach = {}, [], {}, []
    for name, f in mods.items():
        text = f.read_text()
        lines[name] = text.count("\n")
        tree = ast.parse(text)
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > LONG_FUNCTION:
                    long_fns.append((n, f"{name}.{node.name}"))
            if isinstance(node, ast.ImportFrom):
                for target in resolve(name, f.name == "__init__.py", node):
                    if target in mods:
                        deps.add(target)
                        tparts = target.split(".")
                        priv = [i for i, part in enumerate(tparts) if part.startswith("_")
                                and part != "__init__"]
                        if priv:
                            owner = ".".join(tparts[: priv[0]])
                            if not (name == owner or name.startswith(owner + ".")):
                                reach.append(f"{name} -> {target}")
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name in mods:
                        deps.add(a.name)
        deps.discard(name)
        graph[name] = deps
    return lines, sorted(long_fns, reverse=True), graph, sorted(set(reach))


def cycles(graph: dict) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            # a package's __init__ re-exporting its children is not a cycle of concepts
            if w.startswith(v + ".") or v.startswith(w + ".") and w == v.rsplit(".", 1)[0]:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    root = Path(argv[0] if argv else Path(__file__).resolve().parents[1])
    lines, long_fns, graph, reach = analyse(root)
    big = sorted(((n, m) for m, n in lines.items() if n > LONG_MODULE), reverse=True)
    print(f"modules: {len(lines)}, lines: {sum(lines.values())}, largest: "
          f"{max(lines.values())} ({max(lines, key=lines.get)})")
    print(f"modules over {LONG_MODULE} lines: {len(big)}")
    for n, m in big:
        print(f"  {n:5d}  {m}")
    print(f"functions over {LONG_FUNCTION} lines: {len(long_fns)}")
    for n, f in long_fns:
        print(f"  {n:5d}  {f}")
    cyc = cycles(graph)
    print(f"import cycles: {len(cyc)}")
    for c in cyc:
        print("  " + " <-> ".join(c))
    print(f"imports of another package's private modules: {len(reach)}")
    for r in reach:
        print(f"  {r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
