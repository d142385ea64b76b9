"""A reader of the small part of Go that builds string values: enough to run a Go function that
puts together strings from literals, calls, `append`, `fmt.Sprintf`, local variables, maps,
slices, loops and `if`. It parses Go source into a tree and walks it; what it cannot read raises
`Unreadable`, so that a caller can count what it left out rather than guess.

Nothing here knows a particular program: the names a program calls into (its packages' functions,
its types' methods) are given by the caller as `Package`s and `methods`."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar


class Unreadable(Exception):
    """A construct this reader does not run, or a name it does not know."""


# -- the lexer ------------------------------------------------------------------------------------------------

_OPS = sorted(
    [
        *["...", ":=", "+=", "-=", "*=", "/=", "==", "!=", "<=", ">=", "&&", "||", "++", "--", "<<", ">>", "&^", "<-"],
        *"+-*/%&|^<>=!()[]{},;.:",
    ],
    key=len,
    reverse=True,
)
_KEYWORDS = {
    "break", "case", "chan", "const", "continue", "default", "defer", "else", "fallthrough", "for", "func",
    "go", "goto", "if", "import", "interface", "map", "package", "range", "return", "select", "struct",
    "switch", "type", "var",
}  # fmt: skip
_ENDS_LINE = {"ident", "string", "int", "float", "char"}
_ENDS_LINE_OPS = {")", "]", "}", "++", "--"}
_ENDS_LINE_WORDS = {"break", "continue", "return", "fallthrough"}
_IDENT = re.compile(r"[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_\u0080-\U0010ffff]*")
_NUMBER = re.compile(r"0[xX][0-9a-fA-F_]+|\d[\d_]*(\.\d*)?([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?")
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\", "'": "'", '"': '"'}


@dataclass(frozen=True)
class Token:
    kind: str  # ident, keyword, op, string, int, float, char, ";" (a line's end, as Go inserts it)
    value: Any
    line: int


def _unquote(body: str, line: int) -> str:
    out, i = [], 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        e = body[i + 1]
        if e in _ESCAPES:
            out.append(_ESCAPES[e])
            i += 2
        elif e in "xuU":
            n = {"x": 2, "u": 4, "U": 8}[e]
            out.append(chr(int(body[i + 2 : i + 2 + n], 16)))
            i += 2 + n
        elif e in "01234567":
            out.append(chr(int(body[i + 1 : i + 4], 8)))
            i += 4
        else:
            raise Unreadable(f"line {line}: escape \\{e}")
    # Go strings are bytes: a \x escape writes one byte, so bytes above 0x7f are read back as UTF-8.
    text = "".join(out)
    if any(0x80 <= ord(ch) <= 0xFF for ch in text):
        try:
            text = text.encode("latin-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            pass
    return text


def tokens(source: str) -> list[Token]:
    """Go's tokens, with the semicolons Go inserts at a line's end."""
    out: list[Token] = []
    i, line, n = 0, 1, len(source)

    def newline() -> None:
        last = out[-1] if out else None
        if last and (
            last.kind in _ENDS_LINE
            or (last.kind == "op" and last.value in _ENDS_LINE_OPS)
            or (last.kind == "keyword" and last.value in _ENDS_LINE_WORDS)
        ):
            out.append(Token(";", "\n", line))

    while i < n:
        c = source[i]
        if c == "\n":
            newline()
            line += 1
            i += 1
        elif c in " \t\r":
            i += 1
        elif source.startswith("//", i):
            j = source.find("\n", i)
            i = n if j < 0 else j
        elif source.startswith("/*", i):
            j = source.index("*/", i + 2)
            if "\n" in source[i:j]:
                newline()
                line += source.count("\n", i, j)
            i = j + 2
        elif c == "`":
            j = source.index("`", i + 1)
            out.append(Token("string", source[i + 1 : j].replace("\r", ""), line))
            line += source.count("\n", i, j)
            i = j + 1
        elif c == '"':
            j = i + 1
            while source[j] != '"':
                j += 2 if source[j] == "\\" else 1
            out.append(Token("string", _unquote(source[i + 1 : j], line), line))
            i = j + 1
        elif c == "'":
            j = i + 1
            while source[j] != "'":
                j += 2 if source[j] == "\\" else 1
            out.append(Token("char", ord(_unquote(source[i + 1 : j], line)), line))
            i = j + 1
        elif c.isdigit() or (c == "." and i + 1 < n and source[i + 1].isdigit()):
            m = _NUMBER.match(source, i)
            assert m
            text = m.group().replace("_", "")
            if text.lower().startswith("0x"):
                out.append(Token("int", int(text, 16), line))
            elif any(ch in text for ch in ".eE"):
                out.append(Token("float", float(text), line))
            else:
                out.append(Token("int", int(text, 8) if len(text) > 1 and text[0] == "0" else int(text), line))
            i = m.end()
        elif m := _IDENT.match(source, i):
            word = m.group()
            out.append(Token("keyword" if word in _KEYWORDS else "ident", word, line))
            i = m.end()
        else:
            op = next((o for o in _OPS if source.startswith(o, i)), None)
            if op is None:
                raise Unreadable(f"line {line}: character {c!r}")
            out.append(Token("op", op, line))
            i += len(op)
    newline()
    return out


# -- the parser: nodes are tuples, their first item names them -----------------------------------------------

Node = tuple[Any, ...]


@dataclass
class FuncDecl:
    name: str
    params: list[str]
    variadic: bool
    body: list[Node]
    line: int


@dataclass
class GoFile:
    package: str
    imports: dict[str, str]  # the name a file calls a package by: its import path
    funcs: dict[str, FuncDecl]
    values: dict[str, Node]  # package-level var and const: their expressions


class Parser:
    def __init__(self, source: str) -> None:
        self.toks = tokens(source)
        self.i = 0
        self.no_brace = 0  # > 0 in an `if`/`for`/`switch` header, where `T{` is not a literal

    # helpers
    def peek(self, k: int = 0) -> Token:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else Token("eof", None, -1)

    def at(self, value: str, k: int = 0) -> bool:
        t = self.peek(k)
        return t.kind in ("op", "keyword") and t.value == value

    def take(self) -> Token:
        t = self.peek()
        self.i += 1
        return t

    def expect(self, value: str) -> Token:
        t = self.take()
        if t.value != value or t.kind not in ("op", "keyword"):
            raise Unreadable(f"line {t.line}: expected {value!r}, found {t.value!r}")
        return t

    def ident(self) -> str:
        t = self.take()
        if t.kind != "ident":
            raise Unreadable(f"line {t.line}: expected a name, found {t.value!r}")
        return str(t.value)

    def semis(self) -> None:
        while self.peek().kind == ";" or self.at(";"):
            self.i += 1

    # the file
    def file(self) -> GoFile:
        self.semis()
        self.expect("package")
        out = GoFile(self.ident(), {}, {}, {})
        self.semis()
        while self.peek().kind != "eof":
            if self.at("import"):
                self.take()
                for spec in self._group(self._import_spec):
                    out.imports.update(spec)
            elif self.at("func"):
                f = self.func_decl()
                if f is not None:
                    out.funcs[f.name] = f
            elif self.at("var") or self.at("const"):
                self.take()
                for names, values in self._group(self._value_spec):
                    for name, value in zip(names, values, strict=False):
                        out.values[name] = value
            elif self.at("type"):
                self.take()
                self._group(self._type_spec)
            else:
                raise Unreadable(f"line {self.peek().line}: top level {self.peek().value!r}")
            self.semis()
        return out

    def _group(self, spec: Callable[[], Any]) -> list[Any]:
        if self.at("("):
            self.take()
            self.semis()
            out = []
            while not self.at(")"):
                out.append(spec())
                self.semis()
            self.take()
            return out
        return [spec()]

    def _import_spec(self) -> dict[str, str]:
        alias = self.ident() if self.peek().kind == "ident" else None
        if self.at("."):
            self.take()
        path = str(self.take().value)
        return {alias or path.rsplit("/", 1)[-1]: path}

    def _value_spec(self) -> tuple[list[str], list[Node]]:
        names = [self.ident()]
        while self.at(","):
            self.take()
            names.append(self.ident())
        typ = None
        if not self.at("=") and self.peek().kind != ";" and not self.at(")"):
            typ = self.type_()
        values: list[Node] = []
        if self.at("="):
            self.take()
            values = self.expr_list()
        elif typ is not None:
            values = [("zero", typ)] * len(names)
        return names, values

    def _type_spec(self) -> None:
        self.ident()
        if self.at("="):
            self.take()
        self.type_()

    def func_decl(self) -> FuncDecl | None:
        line = self.expect("func").line
        method = False
        if self.at("("):
            method = True
            self.params()
        name = self.ident()
        params, variadic = self.params()
        self.results()
        body = self.block() if self.at("{") else []
        return None if method else FuncDecl(name, params, variadic, body, line)

    def params(self) -> tuple[list[str], bool]:
        """A parameter list's names (a list of types alone: empty names)."""
        self.expect("(")
        groups: list[list[Any]] = []
        variadic = False
        while not self.at(")"):
            start = self.i
            if self.peek().kind == "ident" and not (self.at(",", 1) or self.at(")", 1) or self.at(".", 1)):
                name = self.ident()
                if self.at("..."):
                    self.take()
                    variadic = True
                self.type_()
                groups.append([name])
            else:
                self.i = start
                if self.at("..."):
                    self.take()
                    variadic = True
                self.type_()
                groups.append([""])
            if self.at(","):
                self.take()
                self.semis()
        self.take()
        return [g[0] for g in groups], variadic

    def results(self) -> None:
        if self.at("("):
            self.params()
        elif not self.at("{") and self.peek().kind != ";" and not self.at(",") and not self.at(")"):
            self.type_()

    def type_(self) -> Node:
        t = self.peek()
        if self.at("*"):
            self.take()
            return self.type_()
        if self.at("["):
            self.take()
            if self.at("]"):
                self.take()
                return ("slice", self.type_())
            self.expr()
            self.expect("]")
            return ("slice", self.type_())
        if self.at("map"):
            self.take()
            self.expect("[")
            key = self.type_()
            self.expect("]")
            return ("map", key, self.type_())
        if self.at("func"):
            self.take()
            self.params()
            self.results()
            return ("named", "func")
        if self.at("struct") or self.at("interface"):
            kind = self.take().value
            self.expect("{")
            depth = 1
            while depth:
                tok = self.take()
                depth += (tok.value == "{") - (tok.value == "}") if tok.kind == "op" else 0
            return ("named", kind)
        if self.at("chan"):
            self.take()
            return ("named", "chan", self.type_())
        if t.kind == "ident":
            name = self.ident()
            if self.at(".") and self.peek(1).kind == "ident":
                self.take()
                name += "." + self.ident()
            return ("named", name)
        raise Unreadable(f"line {t.line}: type {t.value!r}")

    # statements
    def block(self) -> list[Node]:
        self.expect("{")
        saved, self.no_brace = self.no_brace, 0
        out = []
        self.semis()
        while not self.at("}"):
            out.append(self.stmt())
            self.semis()
        self.take()
        self.no_brace = saved
        return out

    def stmt(self) -> Node:
        t = self.peek()
        line = t.line
        if t.kind == "keyword":
            if t.value in ("var", "const"):
                self.take()
                return ("decl", line, self._group(self._value_spec))
            if t.value == "return":
                self.take()
                values = [] if self.peek().kind == ";" or self.at("}") else self.expr_list()
                return ("return", line, values)
            if t.value in ("break", "continue"):
                self.take()
                return (t.value, line)
            if t.value == "if":
                return self.if_stmt()
            if t.value == "for":
                return self.for_stmt()
            if t.value == "type":
                self.take()
                self._group(self._type_spec)
                return ("nop", line)
            if t.value in ("defer", "go", "switch", "select", "goto"):
                self.skip_statement()
                return ("unreadable", line, f"line {line}: {t.value} statement")
        if self.at("{"):
            return ("block", line, self.block())
        return self.simple_stmt()

    def skip_statement(self) -> None:
        """Past a statement this reader does not run, to its end at the same depth."""
        depth = 0
        while self.peek().kind != "eof":
            t = self.peek()
            if depth == 0 and (t.kind == ";" or t.value in {";", "}"}):
                return
            self.take()
            if t.kind == "op" and t.value in "([{":
                depth += 1
            elif t.kind == "op" and t.value in ")]}":
                depth -= 1

    def simple_stmt(self) -> Node:
        line = self.peek().line
        left = self.expr_list()
        t = self.peek()
        if t.kind == "op" and t.value in (":=", "=", "+=", "-=", "*=", "/="):
            self.take()
            if self.at("range"):
                self.take()
                return ("range", line, t.value, left, self.expr())
            return ("assign", line, t.value, left, self.expr_list())
        if t.kind == "op" and t.value in ("++", "--"):
            self.take()
            return ("assign", line, "+=" if t.value == "++" else "-=", left, [("lit", 1)])
        if len(left) != 1:
            raise Unreadable(f"line {line}: expression list as a statement")
        return ("expr", line, left[0])

    def if_stmt(self) -> Node:
        line = self.expect("if").line
        self.no_brace += 1
        init = self.simple_stmt()
        cond = None
        if self.at(";") or self.peek().kind == ";":
            self.take()
            cond = self.expr()
        elif init[0] == "expr":
            init, cond = ("nop", line), init[2]
        else:
            raise Unreadable(f"line {line}: if without a condition")
        self.no_brace -= 1
        then = self.block()
        other: list[Node] = []
        if self.at("else"):
            self.take()
            other = [self.if_stmt()] if self.at("if") else self.block()
        return ("if", line, init, cond, then, other)

    def for_stmt(self) -> Node:
        line = self.expect("for").line
        if self.at("{"):
            return ("for", line, ("nop", line), None, ("nop", line), self.block())
        self.no_brace += 1
        if self.at("range"):
            self.take()
            head: Node = ("range", line, "=", [], self.expr())
        else:
            init: Node = ("nop", line)
            if not (self.at(";") or self.peek().kind == ";"):
                init = self.simple_stmt()
            if init[0] == "range":
                head = init
            elif self.at("{"):
                if init[0] != "expr":
                    raise Unreadable(f"line {line}: for header")
                self.no_brace -= 1
                return ("for", line, ("nop", line), init[2], ("nop", line), self.block())
            else:
                self.take()
                cond = None if (self.at(";") or self.peek().kind == ";") else self.expr()
                self.take()
                post = ("nop", line) if self.at("{") else self.simple_stmt()
                self.no_brace -= 1
                return ("for", line, init, cond, post, self.block())
        self.no_brace -= 1
        return ("forrange", line, head, self.block())

    # expressions
    def expr_list(self) -> list[Node]:
        out = [self.expr()]
        while self.at(","):
            self.take()
            out.append(self.expr())
        return out

    _PREC: ClassVar[dict[str, int]] = {
        "||": 1, "&&": 2, "==": 3, "!=": 3, "<": 3, "<=": 3, ">": 3, ">=": 3, "+": 4, "-": 4, "|": 4, "^": 4,
        "*": 5, "/": 5, "%": 5, "<<": 5, ">>": 5, "&": 5, "&^": 5,
    }  # fmt: skip

    def expr(self, prec: int = 1) -> Node:
        left = self.unary()
        while True:
            t = self.peek()
            p = self._PREC.get(t.value) if t.kind == "op" else None
            if p is None or p < prec:
                return left
            self.take()
            left = ("binary", t.value, left, self.expr(p + 1))

    def unary(self) -> Node:
        t = self.peek()
        if t.kind == "op" and t.value in ("-", "+", "!", "^", "&", "*", "<-"):
            self.take()
            return ("unary", t.value, self.unary())
        return self.primary()

    def primary(self) -> Node:
        t = self.peek()
        if t.kind in ("string", "int", "float", "char"):
            self.take()
            node: Node = ("lit", t.value)
        elif t.kind == "ident":
            self.take()
            node = ("name", t.value, t.line)
        elif self.at("("):
            self.take()
            saved, self.no_brace = self.no_brace, 0
            node = self.expr()
            self.no_brace = saved
            self.expect(")")
        elif self.at("func"):
            self.take()
            params, variadic = self.params()
            self.results()
            node = ("funclit", FuncDecl("func", params, variadic, self.block(), t.line))
        elif self.at("[") or self.at("map") or self.at("struct"):
            typ = self.type_()
            node = self.composite(typ) if self.at("{") else ("type", typ)
        else:
            raise Unreadable(f"line {t.line}: expression at {t.value!r}")
        while True:
            if self.at("."):
                self.take()
                if self.at("("):
                    raise Unreadable(f"line {t.line}: type assertion")
                node = ("sel", node, self.ident())
            elif self.at("("):
                self.take()
                saved, self.no_brace = self.no_brace, 0
                args: list[Node] = []
                spread = False
                self.semis()
                while not self.at(")"):
                    args.append(self.expr())
                    if self.at("..."):
                        self.take()
                        spread = True
                    if self.at(","):
                        self.take()
                    self.semis()
                self.take()
                self.no_brace = saved
                node = ("call", node, args, spread, t.line)
            elif self.at("["):
                self.take()
                saved, self.no_brace = self.no_brace, 0
                low = None if self.at(":") else self.expr()
                if self.at(":"):
                    self.take()
                    high = None if self.at("]") else self.expr()
                    node = ("slice", node, low, high)
                else:
                    node = ("index", node, low)
                self.no_brace = saved
                self.expect("]")
            elif self.at("{") and self.no_brace == 0 and node[0] in ("name", "sel") and _is_type_name(node):
                node = self.composite(("named", _dotted(node)))
            else:
                return node

    def composite(self, typ: Node) -> Node:
        self.expect("{")
        saved, self.no_brace = self.no_brace, 0
        elems: list[tuple[Node | None, Node, int]] = []
        self.semis()
        while not self.at("}"):
            line = self.peek().line
            value = self.element(typ)
            key = None
            if self.at(":"):
                self.take()
                key, value = value, self.element(typ)
            elems.append((key, value, line))
            if self.at(","):
                self.take()
            self.semis()
        self.take()
        self.no_brace = saved
        return ("composite", typ, elems)

    def element(self, typ: Node) -> Node:
        if self.at("{"):  # an element whose type is the literal's own element type
            inner = typ[2] if typ[0] == "map" else typ[1] if typ[0] == "slice" else ("named", "?")
            return self.composite(inner)
        return self.expr()


def _dotted(node: Node) -> str:
    return str(node[1]) if node[0] == "name" else _dotted(node[1]) + "." + str(node[2])


def _is_type_name(node: Node) -> bool:
    """`Name{` or `pkg.Name{` is a composite literal where the name is exported or a known type."""
    last = node[1] if node[0] == "name" else node[2]
    return (node[0] == "sel" and node[1][0] == "name" and last[:1].isupper()) or last in ("string", "int")


def parse(source: str) -> GoFile:
    return Parser(source).file()


# -- the evaluator ---------------------------------------------------------------------------------------------


@dataclass
class Struct:
    """A value of a struct type: its fields, those that could not be read held as `Unreadable`."""

    type: str
    fields: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str) -> Any:
        value = self.fields.get(name)
        if isinstance(value, Unreadable):
            raise value
        return value


@dataclass
class Package:
    """A package as a program calls it: its names (functions, values), and where it is Go source
    this reader runs, that source."""

    name: str
    names: dict[str, Any] = field(default_factory=dict)
    files: list[GoFile] = field(default_factory=list)


@dataclass(eq=False)
class Closure:
    decl: FuncDecl
    env: Env
    package: Package
    file: GoFile | None  # whose imports its body's names are read by


class _Return(BaseException):  # not an error: never caught as one
    def __init__(self, value: Any) -> None:
        self.value = value


class _Break(BaseException):  # not an error: never caught as one
    pass


class _Continue(BaseException):  # not an error: never caught as one
    pass


class Env:
    def __init__(self, parent: Env | None = None) -> None:
        self.vars: dict[str, Any] = {}
        self.parent = parent

    def lookup(self, name: str) -> tuple[bool, Any]:
        env: Env | None = self
        while env is not None:
            if name in env.vars:
                return True, env.vars[name]
            env = env.parent
        return False, None

    def set(self, name: str, value: Any) -> None:
        env: Env | None = self
        while env is not None:
            if name in env.vars:
                env.vars[name] = value
                return
            env = env.parent
        raise Unreadable(f"assignment to undeclared {name}")


_PENDING = object()


class Interpreter:
    """Runs functions of `Package`s. `methods` maps (a Go type's name or a Python type, a method's
    name) to a Python function taking the receiver then the arguments. `on_skip`, when given, is
    told (line, reason) of each statement of a function run with `tolerant=True` and of each
    element of a slice literal that could not be read; they are left out and the run goes on."""

    def __init__(
        self,
        packages: dict[str, Package],
        methods: dict[tuple[Any, str], Callable[..., Any]] | None = None,
        zero: dict[str, Callable[[], Any]] | None = None,
    ) -> None:
        self.packages = packages
        self.methods = methods or {}
        self.zero_values = zero or {}
        self.on_skip: Callable[[int, str], None] | None = None
        self._globals: dict[str, dict[str, Any]] = {}
        self.steps = 0
        self.max_steps = 2_000_000

    # package level
    def _package_of(self, file: GoFile) -> Package:
        return next(p for p in self.packages.values() if file in p.files)

    def lookup_global(self, package: Package, name: str) -> Any:
        if name in package.names:
            return package.names[name]
        cache = self._globals.setdefault(package.name, {})
        if name in cache:
            if cache[name] is _PENDING:
                raise Unreadable(f"{name} refers to itself")
            return cache[name]
        for file in package.files:
            if name in file.funcs:
                value: Any = Closure(file.funcs[name], Env(), package, file)
                cache[name] = value
                return value
            if name in file.values:
                cache[name] = _PENDING
                try:
                    value = self.eval(file.values[name], Env(), package, file)
                except Exception:
                    del cache[name]
                    raise
                cache[name] = value
                return value
        raise Unreadable(f"unknown name {name}")

    def call_function(self, package: str, name: str, *args: Any, tolerant: bool = False) -> Any:
        pkg = self.packages[package]
        return self.call(self.lookup_global(pkg, name), list(args), tolerant=tolerant)

    # calls
    def call(self, fn: Any, args: list[Any], tolerant: bool = False) -> Any:
        if isinstance(fn, Closure):
            decl = fn.decl
            env = Env(fn.env)
            params = decl.params
            if decl.variadic:
                fixed = len(params) - 1
                args = [*args[:fixed], list(args[fixed:])]
            for name, value in zip(params, args, strict=False):
                if name and name != "_":
                    env.vars[name] = value
            try:
                self.run(decl.body, env, fn.package, fn.file, tolerant=tolerant)
            except _Return as r:
                return r.value
            return None
        if callable(fn):
            return fn(*args)
        raise Unreadable(f"call of {type(fn).__name__}")

    # statements
    def run(self, body: list[Node], env: Env, pkg: Package, file: GoFile | None, tolerant: bool = False) -> None:
        for stmt in body:
            if not tolerant:
                self.stmt(stmt, env, pkg, file)
                continue
            try:
                self.stmt(stmt, env, pkg, file)
            except Exception as e:  # whatever fails, the statement is left out and counted
                if self.on_skip:
                    self.on_skip(stmt[1], _why(e))

    def stmt(self, s: Node, env: Env, pkg: Package, file: GoFile | None) -> None:
        self.steps += 1
        if self.steps > self.max_steps:
            raise Unreadable("too many steps")
        kind = s[0]
        if kind == "nop":
            return
        if kind == "expr":
            self.eval(s[2], env, pkg, file)
        elif kind == "decl":
            for names, values in s[2]:
                results = self.values(values, env, pkg, file, len(names))
                for name, value in zip(names, results, strict=False):
                    env.vars[name] = value
        elif kind == "assign":
            self.assign(s, env, pkg, file)
        elif kind == "return":
            vals = [self.eval(v, env, pkg, file) for v in s[2]]
            raise _Return(vals[0] if len(vals) == 1 else tuple(vals) if vals else None)
        elif kind == "block":
            self.run(s[2], Env(env), pkg, file)
        elif kind == "if":
            inner = Env(env)
            self.stmt(s[2], inner, pkg, file)
            if self.truth(self.eval(s[3], inner, pkg, file)):
                self.run(s[4], Env(inner), pkg, file)
            else:
                self.run(s[5], Env(inner), pkg, file)
        elif kind == "for":
            inner = Env(env)
            self.stmt(s[2], inner, pkg, file)
            while s[3] is None or self.truth(self.eval(s[3], inner, pkg, file)):
                try:
                    self.run(s[5], Env(inner), pkg, file)
                except _Break:
                    break
                except _Continue:
                    pass
                self.stmt(s[4], inner, pkg, file)
                self.steps += 1
                if self.steps > self.max_steps:
                    raise Unreadable("too many steps")
        elif kind == "forrange":
            _, line, op, names, src = s[2]
            value = self.eval(src, env, pkg, file)
            items: Iterator[tuple[Any, Any]]
            if isinstance(value, dict):
                items = iter(list(value.items()))
            elif isinstance(value, (list, tuple, bytes)):
                items = iter(list(enumerate(value)))
            elif isinstance(value, str):
                items = iter([(i, ord(c)) for i, c in enumerate(value)])
            elif isinstance(value, int):
                items = iter([(i, None) for i in range(value)])
            else:
                raise Unreadable(f"line {line}: range over {type(value).__name__}")
            for k, v in items:
                inner = Env(env)
                for target, item in zip(names, (k, v), strict=False):
                    if target[0] == "name" and target[1] != "_":
                        if op == ":=":
                            inner.vars[target[1]] = item
                        else:
                            env.set(target[1], item)
                try:
                    self.run(s[3], inner, pkg, file)
                except _Break:
                    break
                except _Continue:
                    pass
        elif kind == "break":
            raise _Break
        elif kind == "continue":
            raise _Continue
        elif kind == "unreadable":
            raise Unreadable(s[2])
        elif kind == "range":
            raise Unreadable(f"line {s[1]}: range outside for")
        else:
            raise Unreadable(f"line {s[1]}: statement {kind}")

    def values(self, exprs: list[Node], env: Env, pkg: Package, file: GoFile | None, n: int) -> list[Any]:
        if len(exprs) == 1 and n > 1:
            result = self.eval(exprs[0], env, pkg, file)
            if not isinstance(result, tuple) or len(result) != n:
                raise Unreadable(f"{n} values from one expression")
            return list(result)
        return [self.eval(e, env, pkg, file) for e in exprs]

    def assign(self, s: Node, env: Env, pkg: Package, file: GoFile | None) -> None:
        _, _line, op, targets, exprs = s
        if op in ("+=", "-=", "*=", "/="):
            current = self.eval(targets[0], env, pkg, file)
            value = self.binary(op[0], current, self.eval(exprs[0], env, pkg, file))
            self.store(targets[0], value, env, pkg, file, declare=False)
            return
        results = self.values(exprs, env, pkg, file, len(targets))
        for target, value in zip(targets, results, strict=False):
            self.store(target, value, env, pkg, file, declare=op == ":=")

    def store(self, target: Node, value: Any, env: Env, pkg: Package, file: GoFile | None, declare: bool) -> None:
        if target[0] == "name":
            if target[1] == "_":
                return
            if declare and target[1] not in env.vars:
                env.vars[target[1]] = value
            else:
                env.set(target[1], value)
        elif target[0] == "index":
            container = self.eval(target[1], env, pkg, file)
            container[self.eval(target[2], env, pkg, file)] = value
        elif target[0] == "sel":
            obj = self.eval(target[1], env, pkg, file)
            if not isinstance(obj, Struct):
                raise Unreadable("field assignment on a non-struct")
            obj.fields[target[2]] = value
        else:
            raise Unreadable(f"assignment to {target[0]}")

    # expressions
    def truth(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise Unreadable(f"condition of type {type(value).__name__}")
        return value

    def eval(self, e: Node, env: Env, pkg: Package, file: GoFile | None) -> Any:
        kind = e[0]
        if kind == "lit":
            return e[1]
        if kind == "name":
            name = e[1]
            found, value = env.lookup(name)
            if found:
                return value
            if name in ("true", "false"):
                return name == "true"
            if name == "nil":
                return None
            if file is not None and name in file.imports:
                return self._import(file.imports[name])
            if name in _BUILTINS:
                return _BUILTINS[name]
            if name in ("string", "byte", "rune", "int"):
                return _CONVERSIONS[name]
            return self.lookup_global(pkg, name)
        if kind == "sel":
            base = self.eval(e[1], env, pkg, file)
            return self.select(base, e[2])
        if kind == "call":
            fn = self.eval(e[1], env, pkg, file) if e[1][0] != "type" else _convert_to(e[1][1])
            args = [self.eval(a, env, pkg, file) for a in e[2]]
            if e[3]:
                spread = args.pop()
                args.extend(spread or [])
            return self.call(fn, args)
        if kind == "binary":
            op = e[1]
            left = self.eval(e[2], env, pkg, file)
            if op == "&&":
                return self.truth(left) and self.truth(self.eval(e[3], env, pkg, file))
            if op == "||":
                return self.truth(left) or self.truth(self.eval(e[3], env, pkg, file))
            return self.binary(op, left, self.eval(e[3], env, pkg, file))
        if kind == "unary":
            value = self.eval(e[2], env, pkg, file)
            if e[1] in ("&", "*", "+"):
                return value
            if e[1] == "-":
                return -value
            if e[1] == "!":
                return not self.truth(value)
            raise Unreadable(f"unary {e[1]}")
        if kind == "composite":
            return self.composite(e, env, pkg, file)
        if kind == "index":
            container = self.eval(e[1], env, pkg, file)
            key = self.eval(e[2], env, pkg, file)
            if isinstance(container, dict):
                return container.get(key)
            if isinstance(container, str):
                return ord(container[key])
            return container[key]
        if kind == "slice":
            container = self.eval(e[1], env, pkg, file)
            low = 0 if e[2] is None else self.eval(e[2], env, pkg, file)
            high = None if e[3] is None else self.eval(e[3], env, pkg, file)
            return container[low:high]
        if kind == "funclit":
            return Closure(e[1], env, pkg, file)
        if kind == "zero":
            return self.zero(e[1])
        if kind == "type":
            return _convert_to(e[1])
        raise Unreadable(f"expression {kind}")

    def _import(self, path: str) -> Package:
        if path in self.packages:
            return self.packages[path]
        raise Unreadable(f"package {path}")

    def select(self, base: Any, name: str) -> Any:
        if isinstance(base, Package):
            return self.lookup_global(base, name)
        if isinstance(base, Struct):
            method = self.methods.get((base.type.rsplit(".", 1)[-1], name))
            if method is not None:
                return lambda *args: method(base, *args)
            return base.get(name)
        method = self.methods.get((type(base), name))
        if method is not None:
            return lambda *args: method(base, *args)
        raise Unreadable(f"{type(base).__name__}.{name}")

    def binary(self, op: str, a: Any, b: Any) -> Any:
        if op == "+":
            if type(a) is not type(b) and not (isinstance(a, (int, float)) and isinstance(b, (int, float))):
                raise Unreadable(f"{type(a).__name__} + {type(b).__name__}")
            return a + b
        ops: dict[str, Callable[[Any, Any], Any]] = {
            "-": lambda x, y: x - y,
            "*": lambda x, y: x * y,
            "/": lambda x, y: x // y if isinstance(x, int) and isinstance(y, int) else x / y,
            "%": lambda x, y: x % y,
            "==": lambda x, y: x == y,
            "!=": lambda x, y: x != y,
            "<": lambda x, y: x < y,
            "<=": lambda x, y: x <= y,
            ">": lambda x, y: x > y,
            ">=": lambda x, y: x >= y,
        }
        if op not in ops:
            raise Unreadable(f"operator {op}")
        return ops[op](a, b)

    def zero(self, typ: Node) -> Any:
        if typ[0] in ("slice", "map"):
            return None
        name = typ[1]
        if name in self.zero_values:
            return self.zero_values[name]()
        if name == "string":
            return ""
        if name in ("int", "int64", "uint", "byte", "rune", "float64"):
            return 0
        if name == "bool":
            return False
        return Struct(name)

    def composite(self, e: Node, env: Env, pkg: Package, file: GoFile | None) -> Any:
        _, typ, elems = e
        if typ[0] == "slice":
            out = []
            for key, value, line in elems:
                if key is not None:
                    raise Unreadable(f"line {line}: indexed slice literal")
                try:
                    out.append(self.eval(value, env, pkg, file))
                except Exception as err:
                    if self.on_skip is None:
                        raise
                    self.on_skip(line, _why(err))
            return out
        if typ[0] == "map":
            return {self.eval(k, env, pkg, file): self.eval(v, env, pkg, file) for k, v, _ in elems if k is not None}
        struct = Struct(str(typ[1]))
        for key, value, _line in elems:
            if key is None or key[0] != "name":
                raise Unreadable("struct literal without field names")
            try:
                struct.fields[key[1]] = self.eval(value, env, pkg, file)
            except Exception as err:
                struct.fields[key[1]] = Unreadable(_why(err))  # raised only when the field is read
        return struct


def _append(base: Any, *items: Any) -> list[Any]:
    return [*(base or []), *items]


def _len(value: Any) -> int:
    return 0 if value is None else len(value)


def _why(error: Exception) -> str:
    return str(error) if isinstance(error, Unreadable) else f"{type(error).__name__}: {error}"


def _make(typ: Any, size: int = 0, *_capacity: Any) -> Any:
    if not isinstance(typ, _TypeValue):
        raise Unreadable("make of a value")
    return typ.make(size)


@dataclass
class _TypeValue:
    typ: Node

    def make(self, size: int) -> Any:
        if self.typ[0] == "map":
            return {}
        element = self.typ[1]
        zero = "" if element == ("named", "string") else 0 if element[1:] in (("int",), ("byte",)) else None
        return [zero] * size

    def __call__(self, value: Any) -> Any:
        if self.typ == ("slice", ("named", "byte")) and isinstance(value, str):
            return value.encode("utf-8")
        if self.typ[0] == "named" and self.typ[1] == "string":
            return _to_string(value)
        return value


def _to_string(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, int):
        return chr(value)
    if isinstance(value, str):
        return value
    raise Unreadable(f"string({type(value).__name__})")


def _convert_to(typ: Node) -> _TypeValue:
    return _TypeValue(typ)


_BUILTINS: dict[str, Callable[..., Any]] = {"append": _append, "len": _len, "make": _make}
_CONVERSIONS: dict[str, Callable[..., Any]] = {
    "string": _to_string,
    "byte": lambda v: v,
    "rune": lambda v: v,
    "int": int,
}
