"""One-way imports: the import graph of ``jaxks``, read from the source with ``ast``, has no
cycle, and every import runs down the layer order below (README, "Layout", lists the same order).

Every ``import`` and ``from ... import`` counts, module level or inside a function (an import in
a function only defers the load; it is still a dependency), relative or absolute;
``from jaxks.a import b`` is an import of the module ``jaxks.a.b`` where that is a module.
Importing ``jaxks.a.b`` also runs the package ``jaxks/a/__init__.py``, so that is an edge too
(unless the importer lives inside ``jaxks.a``, which is then already loading). The lazy public
names of ``jaxks/__init__.py`` (``importlib`` on first use) are not imports of the package.
"""

from __future__ import annotations

import ast
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "jaxks"

#: The layers, lowest first: a module imports only from its own layer and those before it.
#: A name covers the module and, for a package, everything inside it ("jaxks" alone is the
#: package's own __init__, which loads only the compile cache eagerly).
LAYERS = (
    ("foundations", ("jaxks", "jaxks.units", "jaxks.system", "jaxks.basis", "jaxks.pairs",
                     "jaxks.linalg", "jaxks.krylov", "jaxks.transfer", "jaxks.fileio",
                     "jaxks.compile_cache", "jaxks.grid_weights")),
    ("integrals", ("jaxks.integrals",)),
    ("xc", ("jaxks.xc", "jaxks.numint", "jaxks.exchange")),
    ("scf", ("jaxks.scf",)),
    ("derivatives", ("jaxks.implicit", "jaxks.forces", "jaxks.hooks")),
    ("deepks", ("jaxks.deepks",)),
    ("models", ("jaxks.models",)),
    ("data", ("jaxks.data",)),
    ("train", ("jaxks.train",)),
    ("commands", ("jaxks.commands", "jaxks.cli", "jaxks.ase_calculator")),
)


def module_files() -> dict[str, pathlib.Path]:
    """{dotted module name: file} of every module of the package."""
    mods = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def layer_of(module: str) -> int | None:
    """Index of the layer of ``module`` in :data:`LAYERS` (longest matching name), or None."""
    best, best_len = None, -1
    for k, (_, names) in enumerate(LAYERS):
        for name in names:
            covers = module == name or (name != "jaxks" and module.startswith(name + "."))
            if covers and len(name) > best_len:
                best, best_len = k, len(name)
    return best


def imports_of(module: str, path: pathlib.Path, mods: dict) -> list[tuple[str, int, str]]:
    """[(imported jaxks module, line, via)] of one file, function-level imports included;
    ``via`` is "" for the module named, or that module for a package it runs on the way."""
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[:len(base) - node.level + (1 if is_package else 0)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in mods else source
                       for alias in node.names]
        else:
            continue
        for target in targets:
            if target != "jaxks" and not target.startswith("jaxks."):
                continue
            while target not in mods:  # `import jaxks.a.b` of an attribute: its module
                target = target.rsplit(".", 1)[0]
            found.append((target, node.lineno, ""))
            # the packages the import runs on the way, unless the importer is inside them
            parts = target.split(".")
            for n in range(2, len(parts)):
                parent = ".".join(parts[:n])
                if not (module == parent or module.startswith(parent + ".")):
                    found.append((parent, node.lineno, target))
    return [edge for edge in found if edge[0] != module]


def import_graph() -> tuple[dict, dict]:
    """(module -> {imported module: (first line, via)}, module -> file)."""
    mods = module_files()
    graph = {}
    for module, path in mods.items():
        edges: dict[str, tuple[int, str]] = {}
        for target, line, via in imports_of(module, path, mods):
            if target not in edges or (edges[target][1] and not via):
                edges[target] = (line, via)
        graph[module] = edges
    return graph, mods


def find_cycles(graph: dict) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each as a list."""
    index, low, stack, on_stack, comps = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return comps


def shortest_cycle(graph: dict, comp: list[str]) -> list[str]:
    """A shortest cycle through ``comp[0]`` inside the component ``comp`` (breadth first),
    as [m0, m1, ..., m0]."""
    start, inside = comp[0], set(comp)
    parent, queue = {start: None}, [start]
    for v in queue:
        for w in sorted(graph[v]):
            if w == start:
                path = [v]
                while parent[path[-1]] is not None:
                    path.append(parent[path[-1]])
                return [start, *reversed(path[:-1]), start]
            if w in inside and w not in parent:
                parent[w] = v
                queue.append(w)
    return [start]


def where(mods: dict, module: str, edge: tuple[int, str]) -> str:
    """"file:line imports target" wording of one edge."""
    line, via = edge
    return f"{mods[module].relative_to(ROOT)}:{line}" + (f" (package of {via})" if via else "")


def test_every_module_has_a_layer():
    _, mods = import_graph()
    missing = [m for m in mods if layer_of(m) is None]
    assert not missing, f"modules in no layer (add them to LAYERS and README): {missing}"


def test_no_import_cycles():
    graph, mods = import_graph()
    messages = []
    for comp in find_cycles(graph):
        inside = set(comp)
        cycle = shortest_cycle(graph, comp)
        steps = [f"  {where(mods, a, graph[a][b])} imports {b}" for a, b in zip(cycle, cycle[1:])]
        messages.append(f"import cycle among {', '.join(comp)}; for example:\n"
                        + "\n".join(steps))
    assert not messages, "\n".join(messages)


def test_imports_run_down_the_layers():
    graph, mods = import_graph()
    upward = []
    for module, edges in sorted(graph.items()):
        src = layer_of(module)
        for target, edge in sorted(edges.items(), key=lambda e: e[1]):
            dst = layer_of(target)
            if edge[1] and layer_of(edge[1]) == dst:
                continue  # the package of a module already reported (same layer)
            if src is not None and dst is not None and dst > src:
                upward.append(f"  {where(mods, module, edge)}: {module} imports {target} "
                              f"({LAYERS[src][0]} → {LAYERS[dst][0]}, an upward import)")
    assert not upward, "imports against the layer order:\n" + "\n".join(upward)


def test_readme_lists_the_same_layers():
    """README's "Layout" section states the layer order; it must be the one tested here."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- layers -->\s*```text\n(.*?)```", text, re.S)
    assert block, "README.md has no layer block (<!-- layers --> then a ```text block)"
    rows = []
    for row in block.group(1).strip().splitlines()[1:]:  # first line: the heading
        name, modules = row.split(None, 1)
        modules = modules.split("  ")[0]  # the module list ends where the remark begins
        rows.append((name, tuple(m.strip() for m in modules.split(",") if m.strip())))
    expected = [(name, tuple(n.removeprefix("jaxks.") if n != "jaxks" else "jaxks"
                             for n in names)) for name, names in LAYERS]
    assert rows == expected, f"README layers {rows} differ from LAYERS {expected}"


def test_the_graph_sees_what_it_must(tmp_path):
    """The graph builder itself: function-level, relative and `from package import module`
    imports all become edges, and a cycle is found (a checker that sees nothing cannot fail)."""
    graph, _ = import_graph()
    # `from jaxks.compile_cache import enable_executable_cache` inside a function of cli.py
    assert "jaxks.compile_cache" in graph["jaxks.cli"]
    assert "jaxks.xc.lda" in graph["jaxks.xc.pbe"]
    toy = {"a": {"b": 1, "d": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"b": 1}, "e": {"a": 1}}
    assert find_cycles(toy) == [["a", "b", "c", "d"]]
    assert shortest_cycle(toy, ["a", "b", "c", "d"]) == ["a", "b", "c", "a"]
    probe = tmp_path / "n.py"
    probe.write_text("import os\n\n\ndef f():\n    from . import m\n    from .q import x\n"
                     "    from jaxks.r.s import t\n")
    mods = dict.fromkeys(["jaxks", "jaxks.p", "jaxks.p.m", "jaxks.p.q", "jaxks.r", "jaxks.r.s"])
    found = imports_of("jaxks.p.n", probe, mods)
    assert sorted(found) == [("jaxks.p.m", 5, ""), ("jaxks.p.q", 6, ""),
                             ("jaxks.r", 7, "jaxks.r.s"), ("jaxks.r.s", 7, "")], found
