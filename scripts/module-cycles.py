#!/usr/bin/env python3
"""Fails when the modules of a crate depend on each other in a cycle (docs/testing.md).

For every crate directory with a src/ (each of its roots: src/lib.rs, src/main.rs,
src/bin/*.rs), the modules are found from the root's `mod x;` declarations (x.rs, x/mod.rs,
and files of a non-mod.rs module under its own directory). A module M references module N
when M's code names a path into N: `crate::a::b`, `super::x` (resolved from the module
the code sits in, inline modules included), `self::x`, in `use` trees (`use crate::{a,
b::c}`) and in expressions alike; `pub use` re-exports are followed to the module that
defines the item. Inline modules (`#[cfg(test)] mod tests { ... }`) are part of the module
of their file. There is an edge M -> N for every such N that is neither M nor one of its
ancestors or descendants (a parent reaching into its children, or a child using its
parent's items, is no cycle). Strongly connected components of more than one module are
cycles: each is listed with one place (file:line) per edge inside it, and the exit code
is 1. Without any: "no module cycle in N crates (M modules)", exit code 0.

`--self-test` builds two tiny crates in a temporary directory, one with a cycle a <-> b
and one without, and checks that only the first is reported.

Python 3 standard library only.
"""

import os
import re
import sys
import tempfile

CRATE_DIRS = ["protocol", "runtime", "simulator", "connector", "harness", "benches", "fuzz"]

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip_code(text):
    """Comments, string and char literals blanked (newlines kept, for line numbers)."""
    out = []
    i, n = 0, len(text)

    def blank(s):
        return "".join(c if c == "\n" else " " for c in s)

    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(blank(text[i:j]))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(blank(text[i:j]))
            i = j
        elif c in "rb" and re.match(r"(?:br|rb|r)#*\"", text[i:i + 260]) and (
            i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")
        ):
            m = re.match(r"(?:br|rb|r)(#*)\"", text[i:])
            close = '"' + m.group(1)
            j = text.find(close, i + m.end())
            j = n if j < 0 else j + len(close)
            out.append(blank(text[i:j]))
            i = j
        elif c == '"' or (c == "b" and text.startswith('b"', i)):
            j = i + (2 if c == "b" else 1)
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(blank(text[i:j]))
            i = j
        elif c == "'":
            # A char literal ('x', '\n', '\u{1F600}'), or a lifetime ('a) left as it is.
            if text.startswith("\\", i + 1):
                j = text.find("'", i + 2)
                j = n if j < 0 else j + 1
                out.append(blank(text[i:j]))
                i = j
            elif i + 2 < n and text[i + 2] == "'":
                out.append("   ")
                i += 3
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


class Crate:
    def __init__(self, name, root):
        self.name = name
        self.root = root
        self.modules = {}  # module path (tuple) -> file
        self.code = {}  # module path -> stripped code of its file
        self.refs = []  # (from module, absolute path tuple, file, line)
        self.reexports = {}  # (module, name) -> absolute path tuple

    def load(self):
        self._add_module((), self.root, mod_rs=True)
        for module in list(self.modules):
            self._scan(module)

    def _add_module(self, path, file, mod_rs):
        if path in self.modules:
            return
        with open(file, encoding="utf-8") as f:
            code = strip_code(f.read())
        self.modules[path] = file
        self.code[path] = code
        base = os.path.dirname(file)
        if not mod_rs:
            base = os.path.join(base, os.path.splitext(os.path.basename(file))[0])
        # `mod x;` at any depth of inline modules: inline `mod a { mod b; }` is a/b.rs.
        for inline, m in self._mod_declarations(code):
            name = m.group("name")
            attrs = m.group("attrs") or ""
            explicit = re.search(r"#\s*\[\s*path\s*=\s*\"([^\"]+)\"", attrs)
            directory = os.path.join(base, *inline)
            if explicit:
                candidates = [os.path.join(directory, explicit.group(1))]
            else:
                candidates = [
                    os.path.join(directory, name + ".rs"),
                    os.path.join(directory, name, "mod.rs"),
                ]
            for c in candidates:
                if os.path.isfile(c):
                    self._add_module(
                        path + tuple(inline) + (name,), c, mod_rs=c.endswith("mod.rs") or bool(explicit)
                    )
                    break

    @staticmethod
    def _mod_declarations(code):
        """(inline module names around it, match) for every `mod x;` in the file."""
        decl = re.compile(
            r"(?P<attrs>(?:#\s*\[[^\]]*\]\s*)*)(?:pub(?:\s*\([^)]*\))?\s+)?mod\s+(?P<name>"
            + IDENT
            + r")\s*;"
        )
        out = []
        for m in decl.finditer(code):
            out.append((Crate._inline_at(code, m.start()), m))
        return out

    @staticmethod
    def _inline_at(code, offset):
        """Names of the inline modules (`mod x { ... }`) that enclose `offset`."""
        stack = []  # (name or None, depth)
        depth = 0
        opener = re.compile(r"\bmod\s+(" + IDENT + r")\s*\{")
        i = 0
        pending = {}
        for m in opener.finditer(code, 0, offset):
            pending[m.end() - 1] = m.group(1)
        while i < offset:
            c = code[i]
            if c == "{":
                depth += 1
                if i in pending:
                    stack.append((pending[i], depth))
            elif c == "}":
                if stack and stack[-1][1] == depth:
                    stack.pop()
                depth -= 1
            i += 1
        return [name for name, _ in stack]

    def _scan(self, module):
        code = self.code[module]
        file = self.modules[module]
        line_starts = [0] + [m.end() for m in re.finditer("\n", code)]

        def line_of(offset):
            lo, hi = 0, len(line_starts) - 1
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if line_starts[mid] <= offset:
                    lo = mid
                else:
                    hi = mid - 1
            return lo + 1

        scopes = self._inline_scopes(code)

        def here(offset):
            # The module the code at `offset` is in, for `super`/`self`: inline modules
            # count there, though their references belong to the file's module.
            inner = []
            for start, end, name in scopes:
                if start <= offset < end:
                    inner.append((start, name))
            return module + tuple(name for _, name in sorted(inner))

        # `use` trees, groups expanded.
        for m in re.finditer(r"\b(pub(?:\s*\([^)]*\))?\s+)?use\s+([^;]*);", code):
            public = m.group(1) is not None
            for path, alias in expand_use(m.group(2)):
                absolute = self._absolute(path, here(m.start()))
                if absolute is None:
                    continue
                self.refs.append((module, absolute, file, line_of(m.start())))
                if public and absolute and alias not in ("*", "self"):
                    self.reexports[(here(m.start()), alias)] = absolute
        # Paths in expressions and types.
        path_re = re.compile(
            r"(?<![A-Za-z0-9_$])(\$?crate|super|self)((?:\s*::\s*(?:" + IDENT + r"))+)"
        )
        for m in path_re.finditer(code):
            segments = [m.group(1).lstrip("$")] + [
                s.strip() for s in m.group(2).split("::") if s.strip()
            ]
            absolute = self._absolute(segments, here(m.start()))
            if absolute is not None:
                self.refs.append((module, absolute, file, line_of(m.start())))

    @staticmethod
    def _inline_scopes(code):
        """(start, end, name) of every inline module's braces in the file."""
        scopes = []
        for m in re.finditer(r"\bmod\s+(" + IDENT + r")\s*\{", code):
            depth, i = 0, m.end() - 1
            while i < len(code):
                if code[i] == "{":
                    depth += 1
                elif code[i] == "}":
                    depth -= 1
                    if depth == 0:
                        break
                i += 1
            scopes.append((m.end() - 1, i + 1, m.group(1)))
        return scopes

    def _absolute(self, segments, current):
        """The absolute path of `segments` used in module `current`; None when it is
        not a path into this crate."""
        if not segments:
            return None
        head, rest = segments[0], list(segments[1:])
        if head == "crate":
            base = ()
        elif head == "self":
            base = current
        elif head == "super":
            base = current[:-1] if current else ()
            while rest and rest[0] == "super":
                base = base[:-1] if base else ()
                rest.pop(0)
        elif current + (head,) in self.modules:
            # A child module named without a prefix (`pub use engine::Engine;`).
            base, rest = current, list(segments)
        else:
            return None
        return tuple(base) + tuple(s for s in rest if s != "self")

    def resolve(self, absolute, seen=None):
        """The module that defines what `absolute` names (re-exports followed)."""
        seen = seen or set()
        module = ()
        for i, seg in enumerate(absolute):
            child = module + (seg,)
            if child in self.modules:
                module = child
                continue
            target = self.reexports.get((module, seg))
            if target is not None and (module, seg) not in seen:
                seen.add((module, seg))
                return self.resolve(tuple(target) + tuple(absolute[i + 1:]), seen)
            break
        return module

    def graph(self):
        """module -> {module: (file, line)} of its first reference there."""
        edges = {m: {} for m in self.modules}
        for source, absolute, file, line in self.refs:
            target = self.resolve(absolute)
            if target == source or is_prefix(target, source) or is_prefix(source, target):
                continue
            edges[source].setdefault(target, (file, line))
        return edges


def is_prefix(a, b):
    return len(a) <= len(b) and tuple(b[: len(a)]) == tuple(a)


def expand_use(tree):
    """Paths of a use tree: `crate::{a::b, c::{self, d as e}}` -> [(segments, alias)]."""
    tokens = re.findall(r"::|\{|\}|,|\*|" + IDENT, tree)
    pos = 0

    def parse(prefix):
        nonlocal pos
        out = []
        segments = list(prefix)
        while pos < len(tokens):
            t = tokens[pos]
            if t == "{":
                pos += 1
                while pos < len(tokens) and tokens[pos] != "}":
                    out.extend(parse(segments))
                    if pos < len(tokens) and tokens[pos] == ",":
                        pos += 1
                pos += 1
                return out
            if t in (",", "}"):
                break
            if t == "::":
                pos += 1
                continue
            if t == "*":
                out.append((segments, "*"))
                pos += 1
                return out
            if t == "as":
                pos += 1
                alias = tokens[pos] if pos < len(tokens) else ""
                pos += 1
                return [(segments, alias)]
            segments = segments + [t]
            pos += 1
        if segments != list(prefix):
            alias = segments[-1] if segments[-1] != "self" else (segments[-2] if len(segments) > 1 else "self")
            out.append((segments, alias))
        return out

    return parse([])


def crate_roots(repo):
    """(label, root file) of every crate target under the crate directories."""
    roots = []
    crates = 0
    for d in CRATE_DIRS:
        src = os.path.join(repo, d, "src")
        if not os.path.isdir(src):
            continue
        crates += 1
        for name in ("lib.rs", "main.rs"):
            f = os.path.join(src, name)
            if os.path.isfile(f):
                roots.append((f"{d} ({name[:-3]})", f))
        bins = os.path.join(src, "bin")
        if os.path.isdir(bins):
            for entry in sorted(os.listdir(bins)):
                f = os.path.join(bins, entry)
                if entry.endswith(".rs"):
                    roots.append((f"{d} (bin {entry[:-3]})", f))
                elif os.path.isfile(os.path.join(f, "main.rs")):
                    roots.append((f"{d} (bin {entry})", os.path.join(f, "main.rs")))
    return crates, roots


def strongly_connected(edges):
    """Tarjan's algorithm, iterative: the components, each a list of modules."""
    index, low, on_stack, stack, comps = {}, {}, set(), [], []
    counter = [0]
    for start in edges:
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, it = work[-1]
            advanced = False
            for nxt in it:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter[0]
                    counter[0] += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(edges.get(nxt, {})))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                comps.append(sorted(comp))
    return comps


def name(module):
    return "::".join(module) if module else "crate"


def check(repo):
    """(report lines, number of cycles, crates, modules)."""
    crates, roots = crate_roots(repo)
    lines, cycles, modules = [], 0, 0
    for label, root in roots:
        crate = Crate(label, root)
        crate.load()
        modules += len(crate.modules)
        edges = crate.graph()
        for comp in strongly_connected(edges):
            if len(comp) < 2:
                continue
            cycles += 1
            lines.append(f"{label}: module cycle: {' <-> '.join(name(m) for m in comp)}")
            members = set(comp)
            for source in comp:
                for target, (file, line) in sorted(edges[source].items()):
                    if target in members:
                        where = os.path.relpath(file, repo)
                        lines.append(f"  {name(source)} -> {name(target)}  ({where}:{line})")
    return lines, cycles, crates, modules


def self_test():
    with tempfile.TemporaryDirectory() as tmp:
        def crate(dirname, files):
            for path, text in files.items():
                full = os.path.join(tmp, dirname, path)
                os.makedirs(os.path.dirname(full), exist_ok=True)
                with open(full, "w", encoding="utf-8") as f:
                    f.write(text)

        cyclic = os.path.join(tmp, "cyclic")
        crate("cyclic/protocol", {
            "src/lib.rs": "pub mod a;\npub mod b;\n",
            "src/a.rs": "use crate::b::B;\npub struct A;\n",
            "src/b.rs": "// crate::a::A in a comment is no reference\npub struct B;\n"
                        "fn f() -> super::a::A { super::a::A }\n",
        })
        acyclic = os.path.join(tmp, "acyclic")
        crate("acyclic/protocol", {
            "src/lib.rs": "pub mod a;\npub mod b;\npub mod c;\npub use c::C;\n",
            "src/a.rs": "use crate::{b::B, C};\npub struct A;\n"
                        "#[cfg(test)]\nmod tests {\n    use super::*;\n    use super::super::a::A;\n}\n",
            "src/b.rs": "use crate::c;\npub struct B;\nconst S: &str = \"crate::a::A\";\n"
                        "const R: &str = r#\"use crate::a;\"#;\n",
            "src/c/mod.rs": "pub mod inner;\npub struct C;\n",
            "src/c/inner.rs": "use super::C;\nuse crate::c::inner;\n",
        })
        # Through a re-export: b names `crate::A`, which is a::A.
        reexport = os.path.join(tmp, "reexport")
        crate("reexport/protocol", {
            "src/lib.rs": "pub mod a;\npub mod b;\npub use a::A;\n",
            "src/a.rs": "pub struct A(crate::b::B);\n",
            "src/b.rs": "pub struct B;\npub fn f(_: &crate::A) {}\n",
        })
        lines, cycles, _, modules = check(cyclic)
        assert cycles == 1, lines
        assert lines[0] == "protocol (lib): module cycle: a <-> b", lines
        assert "  a -> b  (protocol/src/a.rs:1)" in lines, lines
        assert "  b -> a  (protocol/src/b.rs:3)" in lines, lines
        assert modules == 3, modules
        lines, cycles, crates, modules = check(acyclic)
        assert cycles == 0, lines
        assert (crates, modules) == (1, 5), (crates, modules)
        lines, cycles, _, _ = check(reexport)
        assert cycles == 1 and lines[0].endswith("a <-> b"), lines
    print("module-cycles self-test: ok (a cycle a <-> b found, directly and through a re-export; none in a crate without one)")
    return 0


def main(argv):
    if "--self-test" in argv[1:]:
        return self_test()
    repo = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
    if len(argv) > 1 and argv[1] not in ("--self-test",):
        repo = os.path.abspath(argv[1])
    lines, cycles, crates, modules = check(repo)
    if cycles:
        print("\n".join(lines))
        print(f"{cycles} module cycle{'s' if cycles != 1 else ''}: break each by moving what both sides need into one of them or a module of its own")
        return 1
    print(f"no module cycle in {crates} crates ({modules} modules)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
