"""Static scan of a student's code cells for attempts to tamper with the grader.

In-kernel tests can be fooled by code that runs beside them; the verifier decides the
grade anyway, and this scan tells the instructor *what* a submission tried, so that even a
correct answer that also patches something is flagged.
"""

from __future__ import annotations

import ast

# Names whose attributes a solution has no business reassigning.
GUARDED_ROOTS = {"torch", "nn", "F", "np", "numpy", "math", "grading", "builtins", "sys", "os", "IPython",
                 "unittest", "random", "json", "warnings", "inspect", "gc", "types", "importlib", "nbformat"}
CALLS = {
    "input_transformers_cleanup": "registers an IPython input transformer (rewrites every later cell, hidden tests included)",
    "input_transformers_post": "registers an IPython input transformer (rewrites every later cell, hidden tests included)",
    "set_custom_exc": "installs a custom exception handler (hides failing tests)",
    "showtraceback": "replaces IPython's traceback display",
    "register": None,  # only with .events, see below
    "register_magic_function": "registers an IPython magic",
    "_getframe": "inspects the interpreter's stack frames",
    "currentframe": "inspects the interpreter's stack frames",
    "get_objects": "walks the garbage collector's objects",
    "get_referrers": "walks the garbage collector's objects",
    "settrace": "installs a tracing hook",
    "setprofile": "installs a profiling hook",
    "addaudithook": "installs an audit hook",
}


def scan(source: str, protected: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """What the code tries, one plain sentence per finding (empty for honest code).

    ``protected``: names the notebook's own cells define for the tests (e.g. imported checks);
    rebinding one of them is reported.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    findings: list[str] = []
    roots = set(GUARDED_ROOTS)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in GUARDED_ROOTS:
                    roots.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in GUARDED_ROOTS:
            roots.update(a.asname or a.name for a in node.names if a.name[:1].islower() or a.name == "Tensor")

    def add(text: str) -> None:
        if text not in findings:
            findings.append(text)

    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                name = _dotted(target)
                if name and "." in name and name.split(".")[0] in roots:
                    add(f"patches {name}")
                elif name and name.startswith("get_ipython()."):
                    add(CALLS.get(name.rsplit(".", 1)[-1]) or f"patches IPython's shell ({name})")
                if isinstance(target, ast.Name) and target.id in protected:
                    add(f"redefines {target.id}, which the tests use")
                if isinstance(target, ast.Subscript) and _dotted(target.value) in ("sys.modules", "__builtins__", "builtins.__dict__"):
                    add(f"rewrites {_dotted(target.value)}")
        elif isinstance(node, ast.Call):
            func = _dotted(node.func) or ""
            last = func.rsplit(".", 1)[-1]
            if func in ("setattr", "delattr") and node.args and (_dotted(node.args[0]) or "").split(".")[0] in roots:
                add(f"patches {_dotted(node.args[0])} with {func}()")
            elif last == "register" and ".events" in func:
                add("registers an IPython event hook (runs code around every cell, tests included)")
            elif CALLS.get(last):
                add(CALLS[last])
        elif isinstance(node, ast.Attribute) and node.attr in ("input_transformers_cleanup", "input_transformers_post"):
            add(CALLS[node.attr])
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in protected:
            add(f"redefines {node.name}, which the tests use")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            module = node.module if isinstance(node, ast.ImportFrom) else None
            names = [module] if module else [a.name for a in node.names]
            for name in names:
                if name and name.split(".")[0] in ("ctypes", "gc", "builtins", "importlib"):
                    add(f"imports {name.split('.')[0]}")
                if name and name.startswith("grading.instructor"):
                    add("imports the instructor's hidden checks")
    return findings


def _dotted(node) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    if isinstance(node, ast.Call):
        inner = _dotted(node.func)
        if inner:
            parts.append(inner + "()")
            return ".".join(reversed(parts))
    return None
