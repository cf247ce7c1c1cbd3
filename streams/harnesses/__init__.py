"""Measurement and chaos harnesses, apart from the worker: ``segstream bench`` (:mod:`.bench`,
with the faust floor of :mod:`.faust_floor`), ``segstream crash-test`` (:mod:`.crash_test`) and
``segstream soak`` (:mod:`.soak`).

They ship with the package because they are commands a user runs against their own machine and
broker (the figures of docs/benchmarks.md and docs/reliability.md come from them), but nothing
in the worker imports them: the CLI loads each one only when its command runs. They start the
worker as a child process through :mod:`streams.worker_process`, the one helper that ``segstream
run``, these harnesses and the tests share.
"""

__all__: list[str] = []
