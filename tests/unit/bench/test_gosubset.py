"""The reader of a small part of Go (bench/gosubset.py), on snippets written for these tests."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))

from gosubset import Interpreter, Package, Unreadable, parse, tokens

FMT = Package("fmt", {"Sprintf": lambda f, *a: f.replace("%s", "{}").replace("%d", "{}").format(*a)})


def run(source: str, name: str, *args: Any, skipped: list[tuple[int, str]] | None = None) -> Any:
    package = Package("main", {}, [parse(source)])
    interpreter = Interpreter({"main": package, "fmt": FMT})
    interpreter.max_steps = 10_000
    if skipped is not None:
        interpreter.on_skip = lambda line, why: skipped.append((line, why))
    return interpreter.call_function("main", name, *args, tolerant=skipped is not None)


def test_a_line_end_after_a_value_ends_the_statement() -> None:
    kinds = [t.value if t.kind in ("op", ";") else t.kind for t in tokens("x := f(a,\n b)\ny++\n")]
    assert kinds == ["ident", ":=", "ident", "(", "ident", ",", "ident", ")", "\n", "ident", "++", "\n"]


def test_strings_quoted_raw_and_escaped() -> None:
    source = "package p\nfunc F() string {\n\treturn \"a\\tb\\x41\\u00e9\\n\" + `c\\d\n` + string('e')\n}\n"
    assert run(source, "F") == "a\tbA\u00e9\nc\\d\ne"


def test_slices_append_spread_and_loops() -> None:
    source = """package p

import "fmt"

var prefixes = []string{"ab_", "cd_"}

func F(n int) []string {
	out := []string{}
	for i := 0; i < n; i++ {
		if i == 1 {
			continue
		} else if i > 3 {
			break
		}
		out = append(out, fmt.Sprintf("%s%d", prefixes[i%2], i))
	}
	more := []string{"x", "y"}
	out = append(out, more...)
	for _, p := range prefixes {
		out = append(out, p+"z")
	}
	return out
}
"""
    assert run(source, "F", 10) == ["ab_0", "ab_2", "cd_3", "x", "y", "ab_z", "cd_z"]


def test_maps_closures_and_two_results() -> None:
    source = """package p

import "fmt"

func pair(s string) (string, bool) {
	return s + s, len(s) > 1
}

func F() map[string][]string {
	m := map[string][]string{
		"one": {"a"},
	}
	add := func(k string, v ...string) {
		m[k] = append(m[k], fmt.Sprintf("%s", v[0]))
		m[k] = append(m[k], v[1:]...)
	}
	double, long := pair("q")
	if !long {
		add("two", double, "r")
	}
	b := []byte("hi")
	m["three"] = []string{string(b)}
	return m
}
"""
    assert run(source, "F") == {"one": ["a"], "two": ["qq", "r"], "three": ["hi"]}


def test_struct_literals_and_their_fields() -> None:
    source = """package p

func F() string {
	r := conf.Rule{
		ID:    "an-id",
		Other: unknown.Call(),
	}
	return r.ID
}
"""
    assert run(source, "F") == "an-id"  # a field that cannot be read matters only when read


def test_what_cannot_be_read_is_counted_and_left_out() -> None:
    source = """package p

func F() []string {
	out := []string{"a", unknown.Thing("b"), "c"}
	switch out[0] {
	case "a":
		out = nil
	}
	out = append(out, "d")
	return out
}
"""
    skipped: list[tuple[int, str]] = []
    assert run(source, "F", skipped=skipped) == ["a", "c", "d"]
    assert [line for line, _ in skipped] == [4, 5]
    assert "unknown" in skipped[0][1] and "switch" in skipped[1][1]


def test_without_tolerance_an_unreadable_statement_raises() -> None:
    with pytest.raises(Unreadable):
        run("package p\nfunc F() int {\n\tgo f()\n\treturn 1\n}\n", "F")


def test_an_endless_loop_is_cut_short() -> None:
    with pytest.raises(Unreadable, match="too many steps"):
        run("package p\nfunc F() int {\n\tfor {\n\t}\n}\n", "F")
