"""Static scan of a student's code cells for attempts to tamper with the grader.

In-kernel tests can be fooled by code that runs beside them; the verifier decides the
grade anyway, and this scan tells the instructor *what* a submission tried, so that even a
correct answer that also patches something is flagged.

The scanned code is hostile too: each cell is parsed on its own (a broken cell cannot hide
the others, and is itself reported), IPython syntax (magics, shell escapes, ``obj?``) is
set aside before parsing, and nothing here recurses on the code's nesting, so no cell can
make the scan raise or take more than linear time.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator

MAX_CELL_CHARS = 200_000
MAX_TOTAL_CHARS = 1_000_000
NOT_PARSED = "a code cell could not be parsed (so it could not be scanned)"
TOO_LARGE = "a code cell is too large to scan"
TOO_MUCH = f"the code is too large to scan (more than {MAX_TOTAL_CHARS:,} characters in all): the rest was not scanned"
DISPATCHER = "uses torch's dispatcher internals (torch._C / torch.ops / torch.library)"
FRAMES = "inspects the interpreter's stack frames"
DESTROY = "calls a private _destroy method (undoes registrations behind the tests)"

# Names whose attributes a solution has no business reassigning.
GUARDED_ROOTS = {"torch", "nn", "F", "np", "numpy", "math", "grading", "builtins", "sys", "os", "IPython",
                 "unittest", "random", "json", "warnings", "inspect", "gc", "types", "importlib", "nbformat"}
CALLS = {
    "input_transformers_cleanup": "registers an IPython input transformer "
                                  "(rewrites every later cell, hidden tests included)",
    "input_transformers_post": "registers an IPython input transformer "
                               "(rewrites every later cell, hidden tests included)",
    "set_custom_exc": "installs a custom exception handler (hides failing tests)",
    "showtraceback": "replaces IPython's traceback display",
    "register": None,  # only with .events, see below
    "register_magic_function": "registers an IPython magic",
    "_getframe": FRAMES,
    "currentframe": FRAMES,
    "get_objects": "walks the garbage collector's objects",
    "get_referrers": "walks the garbage collector's objects",
    "settrace": "installs a tracing hook",
    "setprofile": "installs a profiling hook",
    "addaudithook": "installs an audit hook",
}
FUNCTION_INTERNALS = {"__closure__", "__wrapped__", "__globals__", "__code__", "__self__", "__func__", "cell_contents",
                      "__defaults__", "__kwdefaults__"}
FRAME_INTERNALS = {"f_back", "f_globals", "f_locals", "f_builtins", "gi_frame", "cr_frame", "ag_frame", "tb_frame"}
TORCH_INTERNALS = {"_C", "ops", "library"}
INSPECT_FRAMES = {"stack", "currentframe", "getouterframes", "getinnerframes", "trace", "getframeinfo"}
FLAGGED_MODULES = {"ctypes", "gc", "builtins", "importlib"}
# Modules an assignment such as ``t = torch`` makes an alias of.
ALIASED_MODULES = {"torch", "sys", "inspect", "gc", "ctypes", "builtins", "importlib"}
PYTHON_CELL_MAGICS = {"time", "timeit", "capture", "prun", "debug"}

NAMES = {
    **{name: text for name, text in CALLS.items() if text},
    **{name: f"reaches into function internals ({name})" for name in FUNCTION_INTERNALS},
    **{name: f"reaches into stack frames ({name})" for name in FRAME_INTERNALS},
    "__subclasses__": "walks the class hierarchy (__subclasses__)",
    "_jit_get_operation": DISPATCHER,
    "_destroy": DESTROY,
}
STRINGS = {**NAMES, "_C": DISPATCHER}

_HELP = re.compile(r"[\w.]+\?{1,2}\s*")
_MAGIC_ASSIGNMENT = re.compile(r"(\s*[\w.]+(?:\s*,\s*[\w.]+)*\s*=\s*)[!%]")


# ---------------------------------------------------------------- parsing


def _without_magics(source: str) -> str:
    """The cell with each IPython-only line (``%magic``, ``!shell``, ``obj?``) turned into ``pass``."""
    lines = []
    for line in source.split("\n"):
        stripped = line.lstrip()
        indent = line[:len(line) - len(stripped)]
        if stripped[:1] in ("%", "!", "?") or _HELP.fullmatch(stripped):
            lines.append(indent + "pass")
        elif (match := _MAGIC_ASSIGNMENT.match(line)):
            lines.append(match.group(1) + "None")
        else:
            lines.append(line)
    return "\n".join(lines)


def _parse(source: str) -> ast.Module:
    """The cell's syntax tree, read as IPython would run it; raises when it cannot be parsed."""
    try:
        return ast.parse(source)
    except SyntaxError:
        return ast.parse(_without_magics(source))


def _parse_cell(source: str | None) -> tuple[ast.Module | None, str | None]:
    """A cell's tree, or the finding that says why it was not scanned."""
    if not isinstance(source, str):
        return None, NOT_PARSED
    if len(source) > MAX_CELL_CHARS:
        return None, TOO_LARGE
    first, _, body = source.lstrip().partition("\n")
    try:
        if not first.startswith("%%"):
            return _parse(source), None
        magic = first[2:].split(None, 1)[0] if first[2:].strip() else ""
        try:
            return _parse(body), None
        except (SyntaxError, ValueError):
            if magic in PYTHON_CELL_MAGICS:
                raise
            return ast.Module(body=[], type_ignores=[]), None  # a %%bash or %%html cell: not Python
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None, NOT_PARSED


# ---------------------------------------------------------------- names in the code


def _dotted(node) -> str | None:
    """``a.b().c`` for an attribute chain rooted at a name, else None (iterative)."""
    parts, calls = [], ""
    while True:
        if isinstance(node, ast.Attribute):
            parts.append(node.attr + calls)
            calls, node = "", node.value
        elif isinstance(node, ast.Call):
            calls, node = calls + "()", node.func
        elif isinstance(node, ast.Name):
            parts.append(node.id + calls)
            return ".".join(reversed(parts))
        else:
            return None


def _chain(node, inner: set[int]) -> tuple[list[str], bool]:
    """The identifiers of the attribute/call chain ending at ``node``, root first, and whether it
    is rooted at a name; every node of the chain is added to ``inner`` so it is read only once."""
    names = []
    while isinstance(node, (ast.Attribute, ast.Call, ast.Name)):
        inner.add(id(node))
        if isinstance(node, ast.Name):
            names.append(node.id)
            return names[::-1], True
        if isinstance(node, ast.Attribute):
            names.append(node.attr)
            node = node.value
        else:
            node = node.func
    return names[::-1], False


def _targets(node) -> Iterator:
    """The assignment targets of a statement, tuples unpacked (iteratively)."""
    if isinstance(node, ast.Assign):
        pending = list(node.targets)
    elif isinstance(node, (ast.AugAssign, ast.AnnAssign, ast.For, ast.AsyncFor)):
        pending = [node.target]
    elif isinstance(node, ast.Delete):
        pending = list(node.targets)
    else:
        return
    while pending:
        target = pending.pop()
        if isinstance(target, (ast.Tuple, ast.List)):
            pending.extend(target.elts)
        elif isinstance(target, ast.Starred):
            pending.append(target.value)
        else:
            yield target


def _names_in(cells: list[list[ast.AST]], protected: Iterable[str]) -> tuple[set[str], dict[str, str]]:
    """Local names whose attributes are guarded, and local aliases of modules and their members
    (``t`` -> ``torch``, ``C`` -> ``torch._C``, ``g`` -> ``sys._getframe``), across all cells."""
    roots = set(GUARDED_ROOTS) | set(protected)
    aliases: dict[str, str] = {}
    for nodes in cells:
        for node in nodes:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] in GUARDED_ROOTS:
                        roots.add((alias.asname or alias.name).split(".")[0])
                    if alias.asname:
                        aliases[alias.asname] = alias.name
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                if node.module.split(".")[0] in GUARDED_ROOTS:
                    roots.update(a.asname or a.name for a in node.names if a.name[:1].islower() or a.name == "Tensor")
                aliases.update((a.asname or a.name, f"{node.module}.{a.name}") for a in node.names if a.name != "*")
            elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                value = _dotted(node.value)
                if value and "(" not in value:
                    head, _, rest = value.partition(".")
                    full = aliases.get(head, head) + ("." + rest if rest else "")
                    if full.split(".")[0] in ALIASED_MODULES:
                        aliases[node.targets[0].id] = full
    return roots, aliases


# ---------------------------------------------------------------- findings


def _path_findings(parts: list[str]) -> Iterator[str]:
    """What a use of the dotted name ``parts`` (module aliases resolved) reveals."""
    if len(parts) > 1 and parts[0] == "torch" and parts[1] in TORCH_INTERNALS:
        yield DISPATCHER
    if len(parts) > 1 and parts[0] == "inspect" and parts[1] in INSPECT_FRAMES:
        yield FRAMES
    events = False
    for part in parts:
        if part in NAMES:
            yield NAMES[part]
        elif part == "register" and events:
            yield "registers an IPython event hook (runs code around every cell, tests included)"
        events = events or part == "events"


def _module_findings(module: str) -> Iterator[str]:
    """What importing ``module`` (a dotted name) reveals."""
    parts = module.split(".")
    if parts[0] in FLAGGED_MODULES:
        yield f"imports {parts[0]}"
    if module.startswith("grading.instructor"):
        yield "imports the instructor's hidden checks"
    yield from _path_findings(parts)


def _import_findings(node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    if isinstance(node, ast.Import):
        modules = [a.name for a in node.names]
    elif node.module:
        modules = [node.module] + [f"{node.module}.{a.name}" for a in node.names if a.name != "*"]
    else:
        modules = [a.name for a in node.names]
    for module in modules:
        yield from _module_findings(module)


def _call_findings(node: ast.Call, roots: set[str]) -> Iterator[str]:
    func = node.func
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
    first = node.args[0] if node.args else None
    if name in ("setattr", "delattr") and isinstance(func, ast.Name) and first is not None:
        target = _dotted(first) or ""
        if target.split(".")[0] in roots:
            yield f"patches {target} with {name}()"
    if name in ("__import__", "import_module") and isinstance(first, ast.Constant) and isinstance(first.value, str):
        yield from _module_findings(first.value)


def _target_findings(target, roots: set[str], protected: Iterable[str]) -> Iterator[str]:
    name = _dotted(target)
    if name and "." in name and name.split(".")[0] in roots:
        yield f"patches {name}"
    elif name and name.startswith("get_ipython()."):
        yield CALLS.get(name.rsplit(".", 1)[-1]) or f"patches IPython's shell ({name})"
    if isinstance(target, ast.Name) and target.id in protected:
        yield f"redefines {target.id}, which the tests use"
    if isinstance(target, ast.Subscript):
        container = _dotted(target.value)
        if container in ("sys.modules", "__builtins__", "builtins.__dict__"):
            yield f"rewrites {container}"


def _node_findings(node, roots: set[str], aliases: dict[str, str], protected, inner: set[int]) -> Iterator[str]:
    """What one node of the tree reveals (chains are read once, from their outermost node)."""
    for target in _targets(node):
        yield from _target_findings(target, roots, protected)
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield from _import_findings(node)
    elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name in protected:
        yield f"redefines {node.name}, which the tests use"
    elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in STRINGS:
        yield STRINGS[node.value]
    if isinstance(node, ast.Call):
        yield from _call_findings(node, roots)
    if isinstance(node, (ast.Attribute, ast.Call, ast.Name)) and id(node) not in inner:
        names, rooted = _chain(node, inner)
        if rooted:
            names = aliases.get(names[0], names[0]).split(".") + names[1:]
        yield from _path_findings(names)


_READ = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.For, ast.AsyncFor, ast.Delete, ast.Import, ast.ImportFrom,
         ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Constant, ast.Call, ast.Attribute, ast.Name)


def _scan_trees(trees: list[ast.Module], protected: frozenset[str] | set[str]) -> list[str]:
    cells = [[node for node in ast.walk(tree) if isinstance(node, _READ)] for tree in trees]
    roots, aliases = _names_in(cells, protected)
    findings: dict[str, None] = {}
    for nodes in cells:
        inner: set[int] = set()
        for node in nodes:
            if isinstance(node, ast.Name) and node.id not in aliases and node.id not in NAMES:
                continue
            findings.update(dict.fromkeys(_node_findings(node, roots, aliases, protected, inner)))
    return list(findings)


def scan_cells(sources: list[str], protected: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """What the code cells try, one plain sentence per finding (empty for honest code). Never raises.

    Each cell is parsed on its own; a cell that cannot be parsed, or is too large, is itself a
    finding, and so is code beyond MAX_TOTAL_CHARS in all. ``protected``: names the notebook's
    own cells define for the tests (e.g. imported checks); rebinding one of them, or patching
    its attributes, is reported.
    """
    try:
        findings: dict[str, None] = {}
        trees, total = [], 0
        for source in sources:
            source = str.__str__(source) if isinstance(source, str) else None
            total += len(source or "")
            if total > MAX_TOTAL_CHARS:
                findings[TOO_MUCH] = None
                break
            tree, problem = _parse_cell(source)
            if problem:
                findings[problem] = None
            else:
                trees.append(tree)
        findings.update(dict.fromkeys(_scan_trees(trees, frozenset(protected))))
        return list(findings)
    except Exception:  # noqa: BLE001 - e.g. MemoryError: the scan must never stop grading
        return [NOT_PARSED]


def scan(source: str, protected: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """``scan_cells`` of a single source."""
    return scan_cells([source], protected)
