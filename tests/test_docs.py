"""The README and docs/ name only commands, flags and files that exist: every `poolgate <command> ... --flag` they
show is accepted by that command's parser, and every repository path they name (from a top-level directory on) is
in the tree. They name every long option of every command, and docs/kubernetes.md every value of the Helm chart."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import yaml

from poolgate.cli import build_parser

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def command_options() -> dict[tuple[str, ...], set[str]]:
    """Each command path (`("bench", "scrape")`) and the options its parser accepts."""
    table: dict[tuple[str, ...], set[str]] = {}

    def walk(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> None:
        table[path] = {option for action in parser._actions for option in action.option_strings}
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, (*path, name))

    walk(build_parser(), ())
    return table


def test_every_flag_shown_after_a_poolgate_command_is_one_it_accepts():
    table, unknown, seen = command_options(), [], 0
    for doc in DOCS:
        for number, line in enumerate(doc.read_text().splitlines(), 1):
            for match in re.finditer(r"\bpoolgate((?: [a-z][a-z-]*){1,2})", line):
                command: tuple[str, ...] = ()
                for word in match.group(1).split():
                    if (*command, word) in table:
                        command = (*command, word)
                if not command:
                    continue
                # the command's own words: up to the end of the code span, a pipe, another command or a comment
                words = re.split(r"`|\||&&|;|\bpoolgate\b|\)|  #", line[match.end() :])[0]
                for flag in re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", words):
                    seen += 1
                    if flag not in table[command]:
                        unknown.append(f"{doc.name}:{number}: poolgate {' '.join(command)} {flag}")
    assert unknown == [] and seen > 100


def test_every_long_option_of_every_command_is_named_in_the_docs():
    text = "\n".join(doc.read_text() for doc in DOCS)
    undocumented = [
        f"poolgate {' '.join(command)} {option}"
        for command, options in command_options().items()
        for option in options
        if option.startswith("--") and option != "--help" and not re.search(rf"{re.escape(option)}(?![\w-])", text)
    ]
    assert undocumented == []


def test_every_repository_path_the_docs_name_exists():
    tops = {path.name for path in REPO.iterdir() if path.is_dir() and not path.name.startswith(".")}
    missing = []
    for doc in DOCS:
        for number, line in enumerate(doc.read_text().splitlines(), 1):
            for path in re.findall(r"`([\w.-]+/[\w./-]*\w/?)(?::\d+)?`", line):
                file_or_folder = path.endswith("/") or "." in path.rsplit("/", 1)[-1]  # not `poolgate/pools` (a key)
                if path.split("/")[0] in tops and file_or_folder and not (REPO / path).exists():
                    missing.append(f"{doc.name}:{number}: {path}")
    assert missing == []


def test_every_helm_value_is_in_the_values_table():
    values = yaml.safe_load((REPO / "helm" / "poolgate" / "values.yaml").read_text())
    named = set(re.findall(r"`([\w.]+)`", (REPO / "docs" / "kubernetes.md").read_text()))

    def leaves(node: object, path: tuple[str, ...]) -> list[tuple[str, ...]]:
        if isinstance(node, dict) and node:
            return [leaf for key, value in node.items() for leaf in leaves(value, (*path, key))]
        return [path]

    unnamed = [
        ".".join(leaf)
        for leaf in leaves(values, ())
        if not any(".".join(leaf[:k]) in named for k in range(2 if len(leaf) > 1 else 1, len(leaf) + 1))
    ]
    assert unnamed == []
