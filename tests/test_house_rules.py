"""The house rules that the lint of `make test` enforces (pyproject.toml, [tool.ruff]): a reach
into a library's private internals outside streams/fixups (or models/river_fixups.py) fails it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRIVATE_REACH = "from faust.streams import _current_event\n\n\ndef f(producer):\n    return producer._message_accumulator, _current_event\n"


def lint(path: str, source: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise",
                           "--stdin-filename", path, "-"], input=source, cwd=ROOT, capture_output=True, text=True)


@pytest.mark.parametrize("path", ["streams/agents.py", "models/drift.py", "monitoring/metrics.py", "schemas/events.py"])
def test_a_private_reach_outside_the_fixups_fails_the_lint(path: str) -> None:
    done = lint(path, PRIVATE_REACH)
    assert done.returncode == 1
    assert "import-private-name" in done.stdout and "private-member-access" in done.stdout, done.stdout


@pytest.mark.parametrize("path", ["streams/fixups/faust_producer.py", "models/river_fixups.py"])
def test_the_fixups_may_reach_into_libraries(path: str) -> None:
    assert lint(path, PRIVATE_REACH).returncode == 0


def test_the_code_passes_the_lint() -> None:
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_every_module_logger_is_named_under_segstream() -> None:
    """Ops filter and route the product's logs by one prefix (``segstream.worker``, ``.web``,
    ``.trainer``, ``.model``, ``.kafka``), not by module paths that move when the code does."""
    import re

    loggers = {}
    for path in [*ROOT.glob("streams/**/*.py"), *ROOT.glob("models/**/*.py"), *ROOT.glob("schemas/**/*.py"),
                 *ROOT.glob("monitoring/**/*.py")]:
        for name in re.findall(r"^log = logging\.getLogger\((.*)\)$", path.read_text(), re.MULTILINE):
            loggers[str(path.relative_to(ROOT))] = name
    assert loggers and all(name.startswith('"segstream') for name in loggers.values()), loggers


def test_the_wiring_is_imported_by_nothing_it_wires() -> None:
    """streams/app.py wires the runtime, the agents and the web views; none of the modules it wires
    imports it back (they share streams/runtime.py), so there is no import cycle to untangle."""
    import ast

    importers = set()
    for path in ROOT.glob("streams/**/*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if "streams.app" in names:
                importers.add(str(path.relative_to(ROOT)))
    assert importers == {"streams/cli.py", "streams/harnesses/faust_floor.py", "streams/harnesses/faust_batch_floor.py"}


def test_errors_raised_on_purpose_are_segstreams() -> None:
    """schemas/errors.py: SegstreamError and its kinds (ContractError, ConfigurationError,
    SetupError, ModelFitError) keep ValueError / RuntimeError as bases, so old handlers still catch
    them."""
    import re

    bare = [f"{path.relative_to(ROOT)}:{n}" for tree in ("schemas", "models", "streams", "monitoring")
            for path in ROOT.glob(f"{tree}/**/*.py")
            for n, line in enumerate(path.read_text().splitlines(), 1)
            if re.search(r"raise (ValueError|RuntimeError)\(", line)]
    assert bare == []


def test_no_import_cycle_between_the_products_modules() -> None:
    """Module-level imports only: an import inside a function (a command loading its harness) or
    under TYPE_CHECKING is lazy on purpose and cannot make a cycle at import time."""
    import ast

    modules = {}
    for tree in ("schemas", "models", "streams", "monitoring"):
        for path in (ROOT / tree).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            modules[name] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.parse(path.read_text()).body:
            targets = ([a.name for a in node.names] if isinstance(node, ast.Import)
                       else [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
                       if isinstance(node, ast.ImportFrom) and node.module else [])
            graph[name] |= {t for t in targets if t in modules and t != name}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [])
    assert cycles == []
