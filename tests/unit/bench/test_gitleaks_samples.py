"""Reading a rule generator's samples (bench/gitleaks_samples.py), on a made-up checkout laid out
as gitleaks' is: its files here are written for this test."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))

import gitleaks_samples

MAIN = """package main

func main() {
	configRules := []*config.Rule{
		rules.Alpha(),
		rules.Beta(),
	}
	_ = configRules
}
"""
UTILS = """package utils

import (
	"fmt"
	"strings"
)

func Sample(name string, secret string) []string {
	forms := map[string]string{
		"env":  "{N}_KEY={s}",
		"yaml": "{n}_key: '{s}'",
	}
	r := strings.NewReplacer("{n}", name, "{N}", strings.ToUpper(name), "{s}", secret)
	out := make([]string, 0, len(forms))
	for _, v := range forms {
		out = append(out, r.Replace(v))
	}
	return out
}

func Hex(n string) string {
	return fmt.Sprintf(`[a-f0-9]{%s}`, n)
}
"""
RULES = """package rules

import (
	"github.com/zricethezav/gitleaks/v8/cmd/generate/config/utils"
	"github.com/zricethezav/gitleaks/v8/cmd/generate/secrets"
	"github.com/zricethezav/gitleaks/v8/config"
)

func Alpha() *config.Rule {
	r := config.Rule{RuleID: "alpha-token"}
	tps := utils.Sample("alpha", "al_"+secrets.NewSecret(utils.Hex("8")))
	tps = append(tps, missing.Call())
	fps := []string{"al_xxxxxxxx"}
	return utils.Validate(r, tps, fps)
}

func Beta() *config.Rule {
	r := config.Rule{RuleID: "beta-token"}
	return &r
}
"""


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    config = tmp_path / "cmd/generate/config"
    for path, text in {
        config / "main.go": MAIN,
        config / "utils/generate.go": UTILS,
        config / "utils/patterns.go": "package utils\n",
        config / "rules/alpha.go": RULES,
        tmp_path / "config/gitleaks.toml": '[[rules]]\nid = "alpha-token"\n[[rules]]\nid = "beta-token"\n',
    }.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_each_rules_samples_as_its_function_builds_them(checkout: Path) -> None:
    made = gitleaks_samples.generate(checkout)
    assert set(made) == {"alpha-token", "beta-token"}
    alpha = made["alpha-token"]
    assert len(alpha.true) == 2
    assert alpha.true[0].startswith("ALPHA_KEY=al_") and alpha.true[1].startswith("alpha_key: 'al_")
    assert alpha.true[0].removeprefix("ALPHA_KEY=") == alpha.true[1][len("alpha_key: '") : -1]
    assert alpha.negatives == ["al_xxxxxxxx"]
    assert len(alpha.unread) == 1 and "line 12" in alpha.unread[0]  # counted, not guessed
    assert made["beta-token"].true == [] and made["beta-token"].unread == []


def test_the_samples_are_the_same_every_run(checkout: Path) -> None:
    assert gitleaks_samples.generate(checkout)["alpha-token"].true == (
        gitleaks_samples.generate(checkout)["alpha-token"].true
    )


def test_a_checkout_not_at_the_pinned_commit_is_warned_of_and_not_cached(
    checkout: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache"
    made = gitleaks_samples.load(checkout, cache)
    assert "not the pinned" in capsys.readouterr().err
    assert not cache.exists()
    assert set(made) == {"alpha-token", "beta-token"}


def test_the_go_library_the_rules_use() -> None:
    replacer = gitleaks_samples.Replacer("{a}", "x", "{b}", "{a}")
    assert replacer.replace("{a}-{b}-{c}") == "x-{a}-{c}"  # one pass: what is put in is not read again
    assert gitleaks_samples.sprintf("%s:%d:%q:%%", "k", 7, 'a"b') == 'k:7:"a\\"b":%'
    raw_url = gitleaks_samples.Encoding(urlsafe=True, padded=False)
    assert raw_url.encode(b"\xfb\xff") == "-_8"
    assert gitleaks_samples.Encoding(urlsafe=False, padded=True).encode(b"\xfb\xff") == "+/8="
