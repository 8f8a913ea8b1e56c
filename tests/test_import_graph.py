"""The project's import graph: no module imports a module of a higher floor, no cycle between its
modules, and the console imports of the DAQ only the message schema (every import counts, also
those inside functions: hiding an upward import in a function only hides the cycle).

The floors, bottom to top (``docs/architecture.md``): infrastructure (``infra``), hardware
(``hw``), the pure kernels (``coincidence``), the emulator, the run store (``runstore``), the
reconstruction (``recon``), the DAQ (``daq``), the console (``gui``), and the commands
(``petdaq``) on top. A module may import its own floor and those below it. The floors are divided
into rooms by role, none crowded: no folder holds more than fifteen modules side by side."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The floors, bottom to top: a package imports only its own floor and those below.
FLOORS = ("infra", "hw", "coincidence", "emulator", "runstore", "recon", "daq", "gui", "petdaq")
PACKAGES = FLOORS


def _modules() -> dict[str, Path]:
    mods = {}
    for package in PACKAGES:
        for f in (ROOT / package).rglob("*.py"):
            parts = f.relative_to(ROOT).with_suffix("").parts
            mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return mods


def _graph() -> dict[str, set[str]]:
    """Module -> the project's modules it imports (``from pkg import sub`` is the submodule)."""
    mods = _modules()

    def known(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, f in mods.items():
        package = m if f.name == "__init__.py" else m.rpartition(".")[0]
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base
                         for a in node.names]
            else:
                continue
            graph[m] |= {k for k in map(known, names) if k and k != m}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_no_import_cycle_between_the_projects_modules() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _floor(module: str) -> int:
    return FLOORS.index(module.split(".")[0])


def upward_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(importer, imported) for every import of a module of a higher floor."""
    return sorted((m, t) for m, targets in graph.items() for t in targets
                  if _floor(t) > _floor(m))


def test_no_module_imports_a_module_of_a_higher_floor() -> None:
    assert upward_imports(_graph()) == []


def test_an_upward_import_is_found_at_any_depth() -> None:
    graph = {"recon.pet.osem": {"hw.scanner", "runstore.listmode"}, "hw.scanner": {"infra.errors"},
             "runstore.rundir": {"daq.pipeline.links.journal"}, "infra.errors": set()}
    assert upward_imports(graph) == [("runstore.rundir", "daq.pipeline.links.journal")]
    mods = _graph()  # an import inside a function counts like one at the top
    assert "runstore.listmode" in mods["recon.pet.dynamic"]


def test_the_console_imports_of_the_daq_only_its_message_schema() -> None:
    for m, targets in _graph().items():
        if m.split(".")[0] == "gui":  # its choices and defaults come in the status reply
            assert {t for t in targets if t.split(".")[0] != "gui"} <= {"daq.messages"}, m


def namespace_takers(source: str) -> list[str]:
    """Functions of ``source`` that take an argparse Namespace: a parameter annotated so, or
    one named ``args`` whose attributes the function reads."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        reads_args = any(isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
                         and n.value.id == "args" for n in ast.walk(node))
        for a in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]:
            annotation = ast.unparse(a.annotation) if a.annotation else ""
            if "Namespace" in annotation or (a.arg == "args" and reads_args):
                found.append(node.name)
    return found


def test_settings_are_typed_at_the_door() -> None:
    """Below the commands (``petdaq``), no function takes an argparse Namespace: each command
    turns its arguments into the typed settings the layers below take."""
    takers = {m: namespace_takers(f.read_text()) for m, f in _modules().items()
              if m.split(".")[0] != "petdaq"}
    assert {m: fns for m, fns in takers.items() if fns} == {}
    assert namespace_takers("def cmd(args):\n    return args.scanner\n") == ["cmd"]
    assert namespace_takers("def f(a: argparse.Namespace) -> None: ...\n") == ["f"]


#: The most Python modules a folder of the product holds side by side (tests aside).
MAX_MODULES_A_FOLDER = 15
#: The longest module directly in ``petdaq/`` (the commands live in their groups' rooms).
MAX_PETDAQ_MODULE_LINES = 400
#: The rooms each floor is divided into, by role (``docs/architecture.md``).
ROOMS = {
    "recon": ("pet", "corrections", "spect", "outputs", "metrics", "calibration", "kinetics",
              "dosimetry", "validation", "motion"),
    "emulator": ("phantoms", "physics", "detector", "outputs", "population"),
    "petdaq": ("acquisition", "runs", "scanner", "images", "phantoms"),
}
#: Iterative algorithms of the reconstruction, which the corrections never import (they call
#: the corrections, as the two-pass scatter does; RECON-STYLE's seventh example).
RECON_ALGORITHMS = ("recon.pet.osem", "recon.pet.live", "recon.pet.runimage", "recon.pet.dynamic",
                    "recon.pet.scattercorr")


def crowded_folders(files: list[Path], limit: int = MAX_MODULES_A_FOLDER) -> dict[str, int]:
    """Folders with more than ``limit`` Python modules side by side, and how many."""
    counts: dict[str, int] = {}
    for f in files:
        counts[str(f.parent)] = counts.get(str(f.parent), 0) + 1
    return {folder: n for folder, n in counts.items() if n > limit}


def test_no_folder_of_the_product_holds_more_than_fifteen_modules() -> None:
    files = [f.relative_to(ROOT) for p in PACKAGES for f in (ROOT / p).rglob("*.py")]
    assert crowded_folders(files) == {}
    assert crowded_folders([Path(f"recon/m{i}.py") for i in range(16)]) == {"recon": 16}


def test_the_floors_are_divided_into_their_rooms() -> None:
    for floor, rooms in ROOMS.items():
        for room in rooms:
            assert (ROOT / floor / room / "__init__.py").is_file(), f"{floor}/{room}"


def test_no_module_directly_in_petdaq_is_long() -> None:
    long = {f.name: n for f in (ROOT / "petdaq").glob("*.py")
            if (n := len(f.read_text().splitlines())) > MAX_PETDAQ_MODULE_LINES}
    assert long == {}


def algorithm_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(correction, algorithm) for every import of a reconstruction algorithm by a correction."""
    return sorted((m, t) for m, targets in graph.items() if m.startswith("recon.corrections")
                  for t in targets if t in RECON_ALGORITHMS)


def test_the_corrections_never_import_an_algorithm() -> None:
    assert algorithm_imports(_graph()) == []
    assert algorithm_imports({"recon.corrections.randoms": {"recon.pet.osem", "recon.grid"}}) == [
        ("recon.corrections.randoms", "recon.pet.osem")]
