"""The layout of docs/ARCHITECTURE.md holds: every module imports only modules below it.

The layers are read from the ```layers block of docs/ARCHITECTURE.md, so the document and
the code cannot drift apart: a module missing from the block, an import of a module listed
at the same height or above, a jaxgan import inside a function body, or a function longer
than 150 lines fails here.
"""

import ast
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_FUNCTION_LINES = 150


def _layers() -> list[list[str]]:
    """Module names per layer, bottom (index 0) first; a folder entry ends with a dot."""
    with open(os.path.join(ROOT, "docs", "ARCHITECTURE.md")) as f:
        text = f.read()
    block = re.search(r"```layers\n(.*?)```", text, re.S)
    assert block, "docs/ARCHITECTURE.md has no ```layers block"
    layers = []
    for line in block.group(1).splitlines():
        paths = [word for word in line.split() if word.endswith((".py", "/"))]
        names = []
        for path in paths:
            if path.endswith("/"):
                names.append(path.replace("/", "."))  # every module of the folder
            else:
                names.append(path.removesuffix(".py").replace("/", ".").removesuffix(".__init__"))
        if names:
            layers.append(names)
    return layers


def _modules() -> dict[str, str]:
    """``{module name: path}`` of every Python file of the package, and train.py."""
    out = {"train": os.path.join(ROOT, "train.py")}
    for folder, _, names in os.walk(os.path.join(ROOT, "jaxgan")):
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                module = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                out[module.removesuffix(".__init__")] = path
    return out


MODULES = _modules()
LAYERS = _layers()


def _rank(module: str) -> int:
    """The layer of a module (a folder entry such as jaxgan/configs/ covers its files)."""
    for index, names in enumerate(LAYERS):
        for name in names:
            if module == name or (name.endswith(".") and (module + ".").startswith(name)):
                return index
    raise AssertionError(f"{module} is not in the layers of docs/ARCHITECTURE.md")


def _jaxgan_imports(node: ast.AST, here: str) -> list[str]:
    """The jaxgan modules an import statement names."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            base = ".".join(here.split(".")[: -node.level] + ([base] if base else []))
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
    else:
        return []
    return [n for n in names if n == "jaxgan" or n.startswith("jaxgan.")]


def _parse(module: str) -> ast.Module:
    with open(MODULES[module]) as f:
        return ast.parse(f.read(), MODULES[module])


def test_every_module_has_a_layer():
    for module in MODULES:
        _rank(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_only_point_down(module):
    here = _rank(module)
    for node in ast.walk(_parse(module)):
        for target in _jaxgan_imports(node, module):
            if target == "jaxgan.configs" or target.startswith("jaxgan.configs."):
                if module.startswith("jaxgan.configs"):
                    continue  # presets build on default.py and on each other
            assert _rank(target) < here, (
                f"{module} imports {target}, which docs/ARCHITECTURE.md lists at the same "
                "height or above it"
            )


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_jaxgan_import_inside_a_function(module):
    for node in ast.walk(_parse(module)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and module != "train":
            for inner in ast.walk(node):
                assert not _jaxgan_imports(inner, module), (
                    f"{MODULES[module]}:{inner.lineno} imports jaxgan inside {node.name}()"
                )


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_function_is_longer_than_150_lines(module):
    for node in ast.walk(_parse(module)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = node.end_lineno - node.lineno + 1
            assert length <= MAX_FUNCTION_LINES, (
                f"{MODULES[module]}:{node.lineno} {node.name}() is {length} lines long"
            )


def test_the_rule_catches_an_upward_import():
    """The checker itself: an import of the trainer from the data layer is caught."""
    tree = ast.parse("def f():\n    from jaxgan import trainer\n")
    (found,) = [t for node in ast.walk(tree) for t in _jaxgan_imports(node, "jaxgan.data")]
    assert found == "jaxgan.trainer" and _rank(found) > _rank("jaxgan.data")


@pytest.mark.parametrize("module", sorted(MODULES))
def test_code_cites_only_files_of_the_repository(module):
    """Every ``*.md`` a module names exists in the repository (docs/ or the top level), and
    nothing points outside it (``shared/``, ``../``)."""
    with open(MODULES[module]) as f:
        text = f.read()
    for cited in re.findall(r"[\w./-]*\w\.md\b", text):
        candidates = [os.path.join(ROOT, cited), os.path.join(ROOT, "docs", cited)]
        assert any(os.path.exists(c) for c in candidates), f"{MODULES[module]} cites {cited}"
    assert not re.search(r"(?<![\w.])(\.\./)?shared/(?!data)", text), f"{MODULES[module]}"
