# SPDX-License-Identifier: EUPL-1.2
"""The documentation stays true to the code: options, commands."""
import re

import yaml

from conftest import REPO


def option_paths(tree, prefix=""):
    """Every option path of a config tree: mappings and their keys."""
    for key, value in tree.items():
        path = f"{prefix}{key}"
        yield path
        if isinstance(value, dict):
            yield from option_paths(value, path + ".")


def test_configuration_md_documents_exactly_the_default_options():
    defaults = yaml.safe_load((REPO / "config" / "default.yaml").read_text())
    in_yaml = set(option_paths(defaults))
    doc = (REPO / "docs" / "configuration.md").read_text()
    in_doc = set(re.findall(r"^### `([^`]+)`$", doc, re.M))
    assert in_yaml - in_doc == set(), "options missing from docs/configuration.md"
    assert in_doc - in_yaml == set(), "docs/configuration.md documents unknown options"


def yaml_text(value):
    """A default as the docs write it: YAML flow style."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(yaml_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {yaml_text(v)}" for k, v in value.items()) + "}"
    return str(value)


def test_configuration_md_states_each_default():
    defaults = yaml.safe_load((REPO / "config" / "default.yaml").read_text())
    doc = (REPO / "docs" / "configuration.md").read_text()
    sections = dict(re.findall(r"^### `([^`]+)`\n(.*?)(?=^### |\Z)", doc, re.M | re.S))

    def check(tree, prefix=""):
        for key, value in tree.items():
            path = prefix + key
            if isinstance(value, dict):
                check(value, path + ".")
                continue
            shown = yaml_text(value)
            assert f"default `{shown}`" in sections[path], f"{path}: default {shown} not stated"
    check(defaults)


def test_readme_gives_the_two_commands():
    readme = (REPO / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    assert "make test" in (REPO / ".ci" / "run").read_text()
