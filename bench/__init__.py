"""Benchmarks and measurements beside the package (docs/benchmarks.md has every figure with the
command that reproduces it). Run each one as a module from the repository root, e.g.
``python -m bench.stability --customers 1000``: the checkout's own code is imported (also from
a git worktree of it), with no ``sys.path`` patching."""
