"""An answer in a student's own hand: the same program with other local names, another order of independent
statements and other comments (``vary``), so that a synthetic class does not hand in identical code.
"""

from __future__ import annotations

import ast
import builtins
import io
import keyword
import random
import tokenize
from collections import Counter

from .exercises import EXERCISES

NAMES = ("acc", "buf", "cur", "res", "tmp", "val", "vec", "mat", "part", "piece", "blk", "cand", "pre", "act",
         "lin", "tot", "prod", "comb", "mix", "nxt", "prev", "fresh", "y", "u", "v", "q", "p", "s", "m", "r2",
         "z1", "t0", "t1", "tmp2", "stuff", "thing", "result", "answer", "current", "step_out", "value")
SUFFIXES = ("_", "2", "_t", "_new", "_val", "1", "_tmp")
COMMENTS = ("# gates", "# step by step", "# shapes as in the lecture", "# keep it simple", "# the recurrence",
            "# as in the notes", "# check the shapes here", "# TODO tidy up", "# one step", "# batch first?",
            "# this part was tricky", "# from the formula", "# weights first", "# passes the checks",
            "# names from the slides", "# compute the output", "# see lecture 3", "# careful with the transpose",
            "# I think this is right", "# same as the diagram")
# Names a renamed local must never take: the notebook's imports, modules the tamper scan guards, and every name
# an exercise refuses (a local named like a fused cell would look like using it).
RESERVED = frozenset({"torch", "nn", "F", "math", "np", "numpy", "self", "cls", "grading", "sys", "os", "random",
                      "json", "inspect", "gc", "types", "importlib", "builtins", "warnings", "unittest", "IPython",
                      "nbformat", "ctypes"})
# Calls that neither change anything nor draw random numbers: statements made of these may swap places.
PURE_FUNCTIONS = frozenset({"len", "range", "int", "float", "slice", "tuple", "min", "max", "abs"})
PURE_MODULE_CALLS = frozenset({
    "torch.sigmoid", "torch.tanh", "torch.cat", "torch.stack", "torch.zeros", "torch.ones", "torch.addmm",
    "torch.matmul", "torch.einsum", "torch.as_tensor", "torch.arange", "torch.eye", "torch.tensor", "torch.Size",
    "torch.lerp", "torch.unbind", "F.linear", "math.sqrt"})
PURE_METHODS = frozenset({"chunk", "split", "t", "view", "reshape", "transpose", "permute", "unsqueeze", "squeeze",
                          "contiguous", "float", "sigmoid", "tanh", "size", "select", "matmul", "unbind", "flatten",
                          "narrow", "new_zeros", "new_empty"})
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef, ast.ListComp, ast.SetComp, ast.DictComp,
           ast.GeneratorExp)
_REFLECTION = {"locals", "vars", "globals", "eval", "exec", "compile", "getattr", "setattr", "delattr", "__import__"}


def vary(source: str, seed: str, reorder: bool = True, keep: set[str] | None = None,
         another_order: bool = False) -> str:
    """``source`` as another student would write it: the same program, in another hand (deterministic per seed).

    Locals assigned inside a function (never parameters, globals, attributes, keywords, or the names in
    ``keep``) are renamed; with ``reorder``, adjacent assignments that only read and compute (no call that
    changes anything or draws random numbers, or only calls of such functions defined in the answer) swap places
    when neither reads or writes what the other writes; comments are changed, dropped or added. With
    ``another_order`` (a copier covering their tracks), every run of such statements that can take another order
    takes one. Every step is checked against the syntax tree it should produce (the renamed tree, the permuted
    tree, the unchanged tree): a step that does not check out is left out.
    """
    rng = random.Random(seed)
    text = source
    steps = [lambda t: _rename(t, rng, keep or set()), lambda t: _comments(t, rng)]
    if reorder:
        steps.insert(0, lambda t: _reorder(t, rng, another_order))
    for step in steps:
        try:
            text = step(text)
        except Exception:  # noqa: BLE001 - an answer the step cannot handle is handed in without that step
            continue
    return text


def _all_names(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.keyword) and node.arg:
            names.add(node.arg)
        elif isinstance(node, ast.alias):
            names.update((node.asname or node.name).split("."))
            names.update(node.name.split("."))
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            names.update(node.names)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
    return names


def _own_nodes(scope: ast.AST):
    """The nodes of one function body, not descending into nested scopes (which are yielded themselves)."""
    stack = list(ast.iter_child_nodes(scope))
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, _SCOPES):
            stack.extend(ast.iter_child_nodes(node))


def _bound_in(scope: ast.AST) -> set[str]:
    """Names a scope binds or declares: parameters, assignments, imports, defs, except names, global/nonlocal."""
    bound: set[str] = set()
    if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        bound.update(a.arg for a in (*scope.args.posonlyargs, *scope.args.args, *scope.args.kwonlyargs))
        bound.update(a.arg for a in (scope.args.vararg, scope.args.kwarg) if a)
    for node in _own_nodes(scope):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            bound.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            bound.update(node.names)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif isinstance(node, ast.comprehension):
            bound.update(n.id for n in ast.walk(node.target) if isinstance(n, ast.Name))
    return bound


def _renameable(function: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    """Locals of ``function`` that are safe to rename: plainly assigned in its own body, bound nowhere else."""
    own = list(_own_nodes(function))
    if any(isinstance(n, (ast.JoinedStr, ast.NamedExpr, ast.Global, ast.Nonlocal, ast.Import, ast.ImportFrom))
           for n in own):
        return set()
    calls = {n.func.id for n in ast.walk(function) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    if calls & _REFLECTION:
        return set()
    stored = {n.id for n in own if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    deleted = {n.id for n in own if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Del)}
    params = {a.arg for a in ast.walk(function.args) if isinstance(a, ast.arg)}
    other = {n.name for n in own if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    other |= {n.name for n in own if isinstance(n, ast.ExceptHandler) and n.name}
    nested = [n for n in ast.walk(function) if n is not function and isinstance(n, _SCOPES)]
    inner = set().union(*(_bound_in(n) for n in nested)) if nested else set()
    return stored - deleted - params - other - inner


def _new_name(old: str, rng: random.Random, taken: set[str]) -> str | None:
    options = [n for n in NAMES if n not in taken]
    options += [old + s for s in SUFFIXES if old + s not in taken]
    options += [f"my_{old}"] if f"my_{old}" not in taken else []
    options = [n for n in options if n.isidentifier() and not keyword.iskeyword(n)]
    return rng.choice(options) if options else None


def _rename(source: str, rng: random.Random, keep: set[str]) -> str:
    tree = ast.parse(source)
    forbidden = {n for ex in EXERCISES.values() for n in (ex.forbidden_names or ())}
    taken = _all_names(tree) | set(dir(builtins)) | set(keyword.kwlist) | RESERVED | forbidden | keep
    edits: dict[tuple[int, int], tuple[int, str]] = {}  # (line, start byte) -> (end byte, new name)
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    for function in functions:
        for old in sorted(_renameable(function) - keep):
            if rng.random() < 0.2:
                continue  # some names stay as the catalogue has them
            new = _new_name(old, rng, taken)
            if new is None:
                continue
            taken.add(new)
            for node in (n for stmt in function.body for n in ast.walk(stmt)):
                if isinstance(node, ast.Name) and node.id == old and (node.lineno, node.col_offset) not in edits:
                    edits[node.lineno, node.col_offset] = (node.end_col_offset, new)
                    node.id = new  # the tree the edited text must parse to
    if not edits:
        return source
    lines = source.splitlines(keepends=True)
    for (line, start), (end, new) in sorted(edits.items(), reverse=True):
        raw = lines[line - 1].encode()
        lines[line - 1] = (raw[:start] + new.encode() + raw[end:]).decode()
    result = "".join(lines)
    if ast.dump(ast.parse(result)) != ast.dump(tree):
        raise ValueError("renaming changed more than names")
    return result


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return None


def _pure(expr: ast.AST, shadowed: set[str], local: dict[str, set[str]] | None = None) -> bool:
    """An expression that computes without changing anything or drawing random numbers (a whitelist; ``local``:
    the answer's own functions known to be such)."""
    allowed = (ast.Name, ast.Constant, ast.Attribute, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.IfExp,
               ast.Tuple, ast.List, ast.Dict, ast.Subscript, ast.Slice, ast.Starred, ast.keyword, ast.Call,
               ast.expr_context, ast.operator, ast.unaryop, ast.boolop, ast.cmpop)
    for node in ast.walk(expr):
        if not isinstance(node, allowed):
            return False
        if isinstance(node, ast.Call):
            func = node.func
            dotted = _dotted(func)
            if isinstance(func, ast.Name):
                if func.id in shadowed or (func.id not in PURE_FUNCTIONS and func.id not in (local or {})):
                    return False
            elif dotted in PURE_MODULE_CALLS and dotted.split(".")[0] not in shadowed:
                continue
            elif not (isinstance(func, ast.Attribute) and func.attr in PURE_METHODS):
                return False
    return True


def _movable(stmt: ast.stmt, shadowed: set[str],
             local: dict[str, set[str]] | None = None) -> tuple[set[str], set[str]] | None:
    """(writes, reads) of an assignment to plain names whose value is pure; None for any other statement.

    A call of one of the answer's own pure functions (``local``: name -> every name its body reads) reads what
    that function reads."""
    if not isinstance(stmt, ast.Assign):
        return None
    writes: set[str] = set()
    for target in stmt.targets:
        for node in ast.walk(target):
            if isinstance(node, ast.Name):
                writes.add(node.id)
            elif not isinstance(node, (ast.Tuple, ast.List, ast.expr_context)):
                return None
    if not _pure(stmt.value, shadowed, local):
        return None
    reads = {n.id for n in ast.walk(stmt.value) if isinstance(n, ast.Name)}
    for name in reads & set(local or {}):
        reads |= (local or {})[name]
    return writes, reads


def _pure_functions(tree: ast.AST, shadowed: set[str]) -> dict[str, set[str]]:
    """The answer's own functions whose call computes without changing anything: name -> the names they read.

    A function qualifies when it is defined once, under a name nothing rebinds, without decorators or defaults,
    and its body is a docstring, pure assignments to plain names and a final ``return`` of a pure value."""
    defs = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
    counts = Counter(d.name for d in defs)
    found: dict[str, set[str]] = {}
    changed = True
    while changed:
        changed = False
        for fn in defs:
            if fn.name in found or counts[fn.name] > 1 or fn.name in shadowed or fn.decorator_list \
                    or fn.args.defaults or any(fn.args.kw_defaults):
                continue
            body = fn.body[1:] if fn.body and isinstance(fn.body[0], ast.Expr) \
                and isinstance(fn.body[0].value, ast.Constant) else fn.body
            if not body or not isinstance(body[-1], ast.Return) or body[-1].value is None:
                continue
            inner = shadowed - {n.id for s in body for n in ast.walk(s) if isinstance(n, ast.Name)
                                and isinstance(n.ctx, ast.Store)} - {a.arg for a in ast.walk(fn.args)
                                                                     if isinstance(a, ast.arg)}
            if all(_movable(s, inner, found) for s in body[:-1]) and _pure(body[-1].value, inner, found):
                found[fn.name] = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name)}
                changed = True
    return found


def _blocks(tree: ast.AST):
    """Every statement list inside a function."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                for name in ("body", "orelse", "finalbody"):
                    block = getattr(inner, name, None)
                    if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                        yield block


def _reorder(source: str, rng: random.Random, another_order: bool = False) -> str:
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    shadowed = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}
    shadowed |= {a.arg for a in ast.walk(tree) if isinstance(a, ast.arg)}
    local = _pure_functions(tree, shadowed)
    replacements: list[tuple[int, int, list[str]]] = []  # (first line, last line, new lines), 1-based
    seen: set[int] = set()
    for block in _blocks(tree):
        if id(block) in seen:
            continue
        seen.add(id(block))
        run: list[ast.stmt] = []
        for stmt in [*block, None]:
            info = _movable(stmt, shadowed, local) if stmt is not None else None
            alone = info is not None and _whole_lines(stmt, lines)
            if alone and (not run or stmt.lineno == run[-1].end_lineno + 1):
                run.append(stmt)
                continue
            if len(run) > 1:
                order = _shuffle(run, [_movable(s, shadowed, local) for s in run], rng, another_order)
                new = [line for s in order for line in lines[s.lineno - 1:s.end_lineno]]
                replacements.append((run[0].lineno, run[-1].end_lineno, new))
                _permute(block, run, order)
            run = [stmt] if alone else []
    for first, last, new in sorted(replacements, reverse=True):
        lines[first - 1:last] = new
    result = "".join(lines)
    if ast.dump(ast.parse(result)) != ast.dump(tree):
        raise ValueError("reordering changed more than the order")
    return result


def _whole_lines(stmt: ast.stmt, lines: list[str]) -> bool:
    """The statement alone on its lines (nothing before it, at most a comment after it)."""
    first = lines[stmt.lineno - 1].encode()
    last = lines[stmt.end_lineno - 1].encode()
    return not first[:stmt.col_offset].strip() and last[stmt.end_col_offset:].strip()[:1] in (b"", b"#")


def _shuffle(run: list[ast.stmt], info: list[tuple[set[str], set[str]]], rng: random.Random,
             another_order: bool = False) -> list[ast.stmt]:
    """A random order of ``run`` that keeps every statement after those it depends on (``info``: writes, reads);
    with ``another_order``, one that differs from the present order when there is one (tried a few times)."""
    before = {i: {j for j in range(i) if info[j][0] & (info[i][0] | info[i][1]) or info[i][0] & info[j][1]}
              for i in range(len(run))}
    for _ in range(50 if another_order else 1):
        done: list[int] = []
        while len(done) < len(run):
            ready = [i for i in range(len(run)) if i not in done and before[i] <= set(done)]
            done.append(rng.choice(ready))
        if done != list(range(len(run))):
            break
    return [run[i] for i in done]


def _permute(block: list[ast.stmt], run: list[ast.stmt], order: list[ast.stmt]) -> None:
    start = block.index(run[0])
    block[start:start + len(run)] = order


def _comments(source: str, rng: random.Random) -> str:
    """Existing comments replaced or dropped; one or two added above statements of function bodies."""
    tree = ast.parse(source)
    original = source.splitlines(keepends=True)
    starts = sorted({s.lineno for block in _blocks(tree) for s in block
                     if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
                     and _whole_lines(s, original)})
    lines = list(original)
    comments = [t for t in tokenize.generate_tokens(io.StringIO(source).readline) if t.type == tokenize.COMMENT]
    for tok in comments:  # the line count stays: a dropped comment line becomes empty, so rows still match
        row, col = tok.start
        line = lines[row - 1]
        ending = line[len(line.rstrip("\r\n")):]
        before = line[:col]
        if rng.random() < 0.3:
            lines[row - 1] = "" if not before.strip() else before.rstrip() + ending
        else:
            lines[row - 1] = before + rng.choice(COMMENTS) + ending
    for row in sorted(rng.sample(starts, min(len(starts), rng.randint(1, 2))), reverse=True):
        indent = original[row - 1][:len(original[row - 1]) - len(original[row - 1].lstrip())]
        lines.insert(row - 1, f"{indent}{rng.choice(COMMENTS)}\n")
    result = "".join(lines)
    if ast.dump(ast.parse(result)) != ast.dump(tree):
        raise ValueError("changing comments changed the code")
    return result
