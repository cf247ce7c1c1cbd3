"""The ``segstream`` command line.

Every option also has an environment variable (see ``streams.settings``); command-line flags win.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional

import typer
from typer.core import TyperCommand, TyperGroup

from streams.log_throttle import throttle_kafka_client_logs, throttle_worker_logs
from streams.partitioning import PartitionerName
from streams.settings import Settings
from streams.wording import plural

#: The exit status of a command stopped by Ctrl-C (SIGINT), after its graceful stop: 128 + 2,
#: the shell's convention, so that ``segstream run && next`` does not go on to ``next``. SIGTERM
#: (a supervisor's ``docker stop``, ``kill``) is an ordinary end: exit 0 after the graceful stop.
#: Where a command has no handler of its own, Ctrl-C raises KeyboardInterrupt: its ``finally``
#: blocks stop what it started on the way up, and typer exits 130. The commands that catch the
#: signal to stop gracefully (kafka, worker, run, tail) exit 130 themselves.
EXIT_INTERRUPTED = 128 + signal.SIGINT


def _flags_without_type(params: list[Any]) -> list[Any]:
    """A flag takes no value: its ``--help`` row shows no value type (typer shows ``<bool>``)."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


def _unwrapped(text: Optional[str]) -> Optional[str]:
    """A docstring's paragraphs each on one line: rich help keeps the source's line breaks, which
    then break the terminal's own wrapping mid-sentence; the terminal wraps them instead."""
    if not text:
        return text
    return "\n\n".join(" ".join(paragraph.split()) for paragraph in text.split("\n\n"))


class _Command(TyperCommand):
    def __init__(self, *args: Any, help: Optional[str] = None, **kwargs: Any) -> None:  # noqa: A002
        super().__init__(*args, help=_unwrapped(help), **kwargs)

    def get_params(self, ctx: Any) -> list[Any]:
        return _flags_without_type(super().get_params(ctx))


class _Group(TyperGroup):
    def __init__(self, *args: Any, help: Optional[str] = None, **kwargs: Any) -> None:  # noqa: A002
        super().__init__(*args, help=_unwrapped(help), **kwargs)

    def get_params(self, ctx: Any) -> list[Any]:
        return _flags_without_type(super().get_params(ctx))


cli = typer.Typer(
    name="segstream",
    cls=_Group,
    help="Real-time customer segmentation on Apache Kafka: value state, BTYD lifetime value, "
    "online clustering and segment-change events.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"segstream {version('segstream')}")
        except PackageNotFoundError:  # run from a checkout that was never installed
            typer.echo("segstream (not installed: run 'pip install -e .')")
        raise typer.Exit(0)


@cli.callback()
def _options(
    show_version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                      help="Show the version and exit."),
) -> None:
    pass


schemas_cli = typer.Typer(cls=_Group, help="Event contracts (JSON Schema).", no_args_is_help=True)
cli.add_typer(schemas_cli, name="schemas")

log = logging.getLogger("segstream")

# No word longer than a help column is wide: rich cuts such a word off with an ellipsis.
_PARTITIONER_HELP = ("How the {who} partitions: murmur2 (the default of Java clients and aiokafka), crc32 "
                     "(the default of librdkafka, kcat and confluent-kafka), fnv1a, or mixed (a different "
                     "one per input topic: purchases murmur2, engagements crc32, feedback fnv1a, profile crc32).")
_WEB_PORT_HELP = "Port of the worker's web API, 1-65535 (default 6066, or as the environment sets it)."
_KEEP_HELP = "Keep the work dir (logs, broker data) even when the {what}."


def _exit_if_interrupted(signum: int | None) -> None:
    """After a graceful stop: exit 130 if it was Ctrl-C (SIGINT) that asked for it."""
    if signum == signal.SIGINT:
        raise typer.Exit(EXIT_INTERRUPTED)


def _with_web_port(settings: Settings, web_port: Optional[int]) -> Settings:
    """``settings`` with the ``--web-port`` flag applied; a port out of range is one line and exit 2
    (``model_copy`` does not validate: 0 would fall back to 6066 and 70000 end in a traceback)."""
    if web_port is None:
        return settings
    if not 1 <= web_port <= 65535:
        typer.secho(f"invalid configuration: --web-port: should be a port from 1 to 65535 (got {web_port})",
                    err=True, fg="red")
        raise typer.Exit(2)
    return settings.model_copy(update={"worker": settings.worker.model_copy(update={"web_port": web_port})})


def _require_bootstrap(settings: Settings, why: str) -> None:
    """No broker configured: one line and exit 2 (not a usage box: the command line was right)."""
    if not settings.bootstrap_servers:
        typer.secho(f"KAFKA_BOOTSTRAP_SERVERS is not set: {why} (e.g. KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092).",
                    err=True, fg="red")
        raise typer.Exit(2)


def _writable_outputs(**paths: Optional[Path]) -> None:
    """Each output file's folder exists and can be written, checked before any work: one line and
    exit 2, not a traceback after the whole replay (``paths``: option name -> path, None: not given)."""
    for option, path in paths.items():
        if path is None:
            continue
        folder = path.parent if str(path.parent) else Path(".")
        if path.is_dir() or not folder.is_dir() or not os.access(folder, os.W_OK):
            why = "is a directory" if path.is_dir() else f"folder {folder} does not exist or is not writable"
            typer.secho(f"--{option.replace('_', '-')}: cannot write {path}: {why}", err=True, fg="red")
            raise typer.Exit(2)


#: The width of a console that is not a terminal: no line is that long, so none is wrapped.
UNWRAPPED_WIDTH = 100_000


def _console(stderr: bool = False, **options: Any) -> Any:
    """A rich console that wraps lines only on a terminal. Piped or redirected (``| tee``, a log
    file, a CI job), rich would wrap at 80 columns (its width when COLUMNS is unset), cutting
    lines that grep and readers expect whole: there every line is written as it is."""
    from rich.console import Console

    console = Console(stderr=stderr, **options)
    if not console.is_terminal:
        # Wider than any line: nothing wraps, and a table still takes only the width it needs (with
        # soft_wrap instead, its title would no longer be centred over it).
        console.width = UNWRAPPED_WIDTH
    return console


def _setup_logging(level: str = "info") -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    throttle_kafka_client_logs()


@contextlib.contextmanager
def _broker(settings: Settings, run_dir: Optional[Path] = None) -> Iterator[str]:
    """The configured broker, or a local one started for the duration of the block."""
    if settings.bootstrap_servers:
        yield settings.bootstrap_servers
        return
    from streams.local_kafka import LocalKafka

    typer.secho("No KAFKA_BOOTSTRAP_SERVERS set: starting a local Apache Kafka "
                f"{settings.local_kafka.version} (KRaft)...", err=True, fg="cyan")
    kafka = LocalKafka.from_settings(settings.local_kafka, run_dir=run_dir)
    try:  # a start interrupted (Ctrl-C) or failed stops the broker process too
        kafka.start()
        typer.secho(f"Kafka ready on {kafka.bootstrap_servers} in {kafka.started_in_s:.1f}s; "
                    f"broker log: {kafka.log_file}", err=True, fg="green")
        yield kafka.bootstrap_servers
    finally:
        typer.secho("Stopping the local broker...", err=True, fg="cyan")
        kafka.stop()


@contextlib.contextmanager
def _run_directory(run_dir: Optional[Path], prefix: str) -> Iterator[Path]:
    """``run_dir`` when the user gave one (``--run-dir``: kept), else a new temporary directory
    (broker data, logs) removed when the block ends, however it ends: Ctrl-C, SIGTERM, a refusal
    in one line (silently: that stays one line). The block stops what it started first (the broker,
    the worker), so nothing writes there any more. Kept, and its path said, only after an
    unexpected error: its logs tell why."""
    if run_dir is not None:
        yield run_dir
        return
    import tempfile

    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    except (typer.Exit, KeyboardInterrupt, SystemExit):
        shutil.rmtree(path, ignore_errors=True)
        raise
    except BaseException:
        _say_kept(path)
        raise
    _remove_run_directory(path, "--run-dir DIR")


@contextlib.contextmanager
def _check_directory(run_dir: Optional[Path], prefix: str, keep: bool) -> Iterator[Path]:
    """The work directory of a check (crash-test, soak, bench): ``run_dir`` when the user gave one
    (``--run-dir``: created if missing, never removed), else a new temporary directory (broker data,
    logs: 15-30 MB) removed when the block ends normally, i.e. the check passed, unless ``keep``.

    Unlike the directory of :func:`_run_directory`, it is kept whenever the block raises: a failure
    (``typer.Exit``: its line names the directory), Ctrl-C or an error (said here), because its logs
    are what explains it. The block stops what it started first, so nothing writes there any more."""
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        yield run_dir
        return
    import tempfile

    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    except typer.Exit:
        raise
    except BaseException:
        _say_kept(path)
        raise
    if keep:
        typer.secho(f"Run directory kept (--keep): {path} (remove it when done)", err=True, fg="cyan")
    else:
        _remove_run_directory(path, "--keep or --run-dir DIR")


def _remove_run_directory(path: Path, keeps: str) -> None:
    """Remove ``path``, a temporary directory the command made, and say so on stderr, naming the
    option (``keeps``) that would have kept it."""
    shutil.rmtree(path, ignore_errors=True)
    typer.secho(f"Removed the run directory {path} ({keeps} keeps the logs and data)", err=True, fg="cyan")


def _say_kept(path: Path) -> None:
    """Say on stderr that ``path``, a temporary directory, stays (its logs explain what went wrong)."""
    typer.secho(f"Run directory kept for its logs: {path} (remove it when done)", err=True, fg="yellow")


def _with_bootstrap(settings: Settings, bootstrap: str) -> Settings:
    return settings.model_copy(update={"bootstrap_servers": bootstrap})


@cli.command(cls=_Command)
def kafka(
    port: int = typer.Option(0, help="Broker port on 127.0.0.1 (0 = a free one)."),
    run_dir: Optional[Path] = typer.Option(None, help="Data and log directory, kept (default: a temporary one, "
                                           "removed on exit)."),
) -> None:
    """Run a local single-node Apache Kafka (KRaft) until Ctrl-C. Jars come from Maven Central."""
    _setup_logging()
    settings = Settings()
    settings = settings.model_copy(update={
        "bootstrap_servers": None,
        "local_kafka": settings.local_kafka.model_copy(update={"port": port}),
    })
    wait_for_signal = _wait_for_signal_setup()
    with _run_directory(run_dir, "segstream-kafka-") as directory, _broker(settings, directory) as bootstrap:
        typer.echo(f"export KAFKA_BOOTSTRAP_SERVERS={bootstrap}")
        received = wait_for_signal()
    _exit_if_interrupted(received)


def _wait_for_signal_setup() -> Callable[[], int]:
    """From now on SIGINT and SIGTERM are only noted (what runs meanwhile, and the stop that
    follows, is not interrupted); the function returned waits for the first and returns it."""
    received: list[int] = []

    def handler(signum, _frame):  # noqa: ANN001
        received.append(signum)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)

    def wait() -> int:
        while not received:
            time.sleep(0.2)
        return received[0]

    return wait


@cli.command("kafka-jars", cls=_Command)
def kafka_jars() -> None:
    """Fetch the Apache Kafka broker jars from Maven Central into the cache (once per version)."""
    _setup_logging()
    from streams.local_kafka import ensure_jars

    settings = Settings().local_kafka
    started = time.monotonic()
    libs = ensure_jars(settings.version, settings.cache_dir)
    typer.echo(f"Kafka {settings.version} jars in {libs} ({time.monotonic() - started:.1f}s)")


@cli.command("topics", cls=_Command)
def topics_create() -> None:
    """Create every segstream topic (idempotent; checks the partition counts of existing ones)."""
    _setup_logging()
    settings = Settings()
    _require_bootstrap(settings, "topics creates them on the broker you run")
    _create_topics(settings)


def _create_topics(settings: Settings) -> None:
    from streams.kafka_admin import ensure_topics
    from streams.kafka_admin import TopicMismatch
    from streams.topics import topic_specs

    with _kafka_unreachable_said_once(settings):
        try:
            asyncio.run(ensure_topics(settings.broker(), topic_specs(settings),
                                      **settings.kafka_client_kwargs()))
        except TopicMismatch as exc:  # co-partitioning would break: refuse, in one line
            typer.secho(str(exc).splitlines()[0], err=True, fg="red")
            raise typer.Exit(2) from None


@contextlib.contextmanager
def _kafka_unreachable_said_once(settings: Settings) -> Iterator[None]:
    """An unreachable broker ends the command with one line and exit 2. aiokafka logs each failed
    attempt, and only there says why (refused, authentication failed): kept, to be said once."""
    from aiokafka.errors import KafkaConnectionError

    client_log, said = logging.getLogger("aiokafka"), _LastError()
    level, propagate = client_log.level, client_log.propagate
    client_log.addHandler(said)
    client_log.setLevel(logging.ERROR)
    client_log.propagate = False
    try:
        yield
    except KafkaConnectionError:
        why = f": {said.message}" if said.message else ""
        typer.secho(f"cannot connect to Kafka at {settings.bootstrap_servers} (KAFKA_BOOTSTRAP_SERVERS){why}",
                    err=True, fg="red")
        raise typer.Exit(2) from None
    finally:
        client_log.removeHandler(said)
        client_log.setLevel(level)
        client_log.propagate = propagate


class _LastError(logging.Handler):
    """The last error a library logged (its message only)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.message = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.message = record.getMessage().splitlines()[0][:300]


def _port_in_use(host: str, port: int, tries: int = 4) -> bool:
    """Whether ``host:port`` cannot be listened on (another process listens there). Bound as the
    web server binds (SO_REUSEADDR: connections of a stopped worker in TIME_WAIT do not count),
    and asked a few times over a second and a half: a worker just killed frees it in a moment."""
    import socket

    for attempt in range(tries):
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
                return False
            except OSError:
                if attempt + 1 < tries:
                    time.sleep(0.5)
    return True


def _check_rules_file(settings: Settings) -> None:
    """Read the rules file now, before a broker or the topics are touched: a missing or invalid
    file is one line (main) rather than an error after start-up."""
    path = settings.engine.segmentation.rules_file
    if path:
        from models.profile import load_rules

        load_rules(path)


def _require_free_web_port(settings: Settings) -> None:
    """A busy web port is one line and exit 2, before anything starts (faust would fail later,
    with a traceback, after the topics and the group)."""
    w = settings.worker
    host = w.web_bind or w.web_host
    if _port_in_use(host, w.web_port):
        typer.secho(f"web port {host}:{w.web_port} is in use (another worker or 'segstream run'?): stop it, or "
                    "choose another with --web-port or SEGSTREAM_WORKER__WEB_PORT", err=True, fg="red")
        raise typer.Exit(2)


def _run_worker(settings: Settings) -> None:
    from streams.app import create_app, use_event_loop
    from streams.group_member import DataDirInUse, lock_data_dir
    from streams.fixups.bounded_shutdown import BoundedShutdownWorker

    _require_free_web_port(settings)
    _check_rules_file(settings)
    try:  # held until the process ends: one worker per data directory (streams.group_member)
        _data_dir_lock = lock_data_dir(settings.worker.data_dir)  # noqa: F841
    except DataDirInUse as exc:
        typer.secho(str(exc), err=True, fg="red")
        raise typer.Exit(2) from None
    use_event_loop(settings)  # before _create_topics runs the first loop
    _create_topics(settings)
    sapp = create_app(settings)
    worker = BoundedShutdownWorker(sapp.app, loglevel=settings.worker.log_level, quiet=True,
                                   shutdown_timeout_s=settings.worker.shutdown_timeout_s)
    sapp.runtime.wiring["shutdown_timeout_s"] = worker.shutdown_timeout_s
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    throttle_kafka_client_logs()
    throttle_worker_logs()
    # faust warns "producer buffer full" whenever table writes outpace the changelog producer by
    # 100 messages: that is its normal backpressure under load, not a fault.
    logging.getLogger("faust.transport.producer").setLevel(logging.ERROR)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
    _exit_if_interrupted(worker.stopped_by)


@cli.command(cls=_Command)
def worker(
    web_port: Optional[int] = typer.Option(None, help=_WEB_PORT_HELP),
) -> None:
    """Run a stream worker against KAFKA_BOOTSTRAP_SERVERS.

    Ctrl-C or SIGTERM stops it gracefully (exit 130 after Ctrl-C)."""
    settings = _with_web_port(Settings(), web_port)
    _require_bootstrap(settings, "use 'segstream run' for a local broker and a worker")
    _run_worker(settings)


@cli.command(cls=_Command)
def run(
    events: Optional[Path] = typer.Option(None, exists=True, dir_okay=False,
                                          help="History to replay through Kafka (default: the CDNOW sample)."),
    rate: float = typer.Option(300.0, min=0.0, help="Replay rate in events per second (0 = as fast as possible)."),
    replay: bool = typer.Option(True, show_default=False,
                                help="--replay (the default): replay the history, the worker on the demo's "
                                "settings (event clock, training every 5 s, a sweep pass every second, the example rule "
                                "segments). --no-replay: only the broker and a worker on your settings (wall clock "
                                "unless set); produce from elsewhere."),
    run_dir: Optional[Path] = typer.Option(None, help="Broker data and logs, kept (default: a temporary directory, "
                                           "removed on exit)."),
    web_port: Optional[int] = typer.Option(None, help=_WEB_PORT_HELP),
) -> None:
    """The whole pipeline: a local Kafka, a worker, a history replayed, segment changes live.

    Starts a local Kafka (unless KAFKA_BOOTSTRAP_SERVERS is set) and a worker, replays a history
    through Kafka and prints the segment changes as the worker emits them. Ctrl-C stops everything
    (exit 130); nothing it started outlives it."""
    _setup_logging()
    settings = _with_web_port(Settings(), web_port)
    _require_free_web_port(settings)  # before the broker: a second 'run' must not start one
    _check_rules_file(settings)
    with _run_directory(run_dir, "segstream-run-") as directory:
        received = _run_pipeline(settings, directory, events, rate, replay)
    _exit_if_interrupted(received)


def _run_pipeline(settings: Settings, run_dir: Path, events: Optional[Path], rate: float,
                  replay: bool) -> Optional[int]:
    """``segstream run`` in ``run_dir``, until the replay and tail end or a signal; the signal."""
    from streams import demo, worker_process

    with _broker(settings, run_dir / "kafka") as bootstrap:
        settings = _with_bootstrap(settings, bootstrap)
        _create_topics(settings)
        log_file = run_dir / "worker.log"
        env = demo.worker_env(bootstrap, replaying=replay)
        env["SEGSTREAM_WORKER__WEB_PORT"] = str(settings.worker.web_port)
        # Its tables in this run's directory, not ./.segstream-data: a second run from the same
        # directory (on another port) must not find the first one's data directory locked.
        env.setdefault("SEGSTREAM_WORKER__DATA_DIR", str(run_dir / "worker-data"))
        worker_proc = worker_process.start(env, log_file)
        url = f"http://{settings.worker.web_host}:{settings.worker.web_port}"
        try:
            typer.secho(f"Worker starting (log: {log_file})...", err=True, fg="cyan")
            worker_process.wait_ready(worker_proc, settings.worker.web_port, log_file, timeout_s=120,
                                      host=settings.worker.web_host)
            typer.secho(f"Worker ready: {url}/segments, {url}/customers/<id>, {url}/metrics", err=True, fg="green")
            if not replay:
                typer.secho(f"Produce from another terminal:\n  export KAFKA_BOOTSTRAP_SERVERS={bootstrap}\n"
                            "  segstream produce examples/events.jsonl\nCtrl-C stops.", err=True, fg="yellow")
                received = _wait_for_signal_setup()()
            else:
                history = demo.history_in_time_order(events or demo.CDNOW_SAMPLE, run_dir)
                typer.secho(f"Replaying {history} at {rate:g} events/s; segment changes follow.", err=True,
                            fg="cyan")
                received = asyncio.run(demo.replay_and_tail(settings, history, rate,
                                                            lambda msg: typer.secho(msg, err=True, fg="green")))
        finally:
            typer.secho("Stopping the worker...", err=True, fg="cyan")
            worker_process.stop(worker_proc)
    return received


@cli.command(cls=_Command)
def produce(
    file: Path = typer.Argument(..., exists=True, dir_okay=False,
                                help="Contract JSONL (one event per line) or a CDNOW transaction file."),
    file_format: str = typer.Option("auto", "--format", metavar="[auto|jsonl|cdnow]",
                                    help="auto: detect CDNOW from the first line, else JSONL."),
    rate: float = typer.Option(0.0, min=0.0, help="Events per second (0 = as fast as possible)."),
    limit: int = typer.Option(0, min=0, help="Send at most this many events (0 = all)."),
    partitioner: Optional[PartitionerName] = typer.Option(
        None, metavar="<name>",
        help=_PARTITIONER_HELP.format(who="producer") + " Default: the producer client's own (murmur2)."),
) -> None:
    """Send events to their topics, keyed by customer_id: JSONL by 'type', CDNOW lines as purchases."""
    from rich.markup import escape
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    from streams.producer import FORMATS, Skipped, produce_until_signalled

    _setup_logging("warning")
    settings = Settings()
    _require_bootstrap(settings, "produce sends to the broker your worker reads")
    if file_format not in FORMATS:
        raise typer.BadParameter(f"expected one of {', '.join(FORMATS)}", param_hint="--format")
    # Created here if missing: a broker that auto-creates topics would give them one partition,
    # which the worker then refuses (the customer topics must be co-partitioned).
    _create_topics(settings)
    console = _console(stderr=True, highlight=False)
    show_skipped = 20  # a wrong file has a skip per line: print the first ones, count them all
    skipped_seen = 0

    def report_skip(skip: Skipped) -> None:
        # Printed as they happen, above the progress bar.
        nonlocal skipped_seen
        skipped_seen += 1
        if skipped_seen <= show_skipped:  # the reason quotes the line: no markup in it
            console.print(f"[yellow]line {skip.line}[/]: {escape(skip.reason)}; skipped", markup=True)

    # Off when stderr is not a terminal: a transient bar would leave an empty line in a log file.
    with Progress(TextColumn("producing"), BarColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("produce", total=file.stat().st_size)
        with _kafka_unreachable_said_once(settings):
            report = asyncio.run(produce_until_signalled(
                settings, file, file_format=file_format, rate=rate, limit=limit,
                on_progress=lambda done: progress.update(task, completed=done), on_skip=report_skip,
                partitioner=partitioner,
            ))
    if skipped_seen > show_skipped:
        console.print(f"... and {plural(skipped_seen - show_skipped, 'more skipped line')}")
    typer.echo(f"sent {plural(report.sent, 'event')} ({report.file_format}); "
               f"{plural(len(report.skipped), 'line')} skipped; "
               f"{report.seconds:.1f}s, {report.events_per_s:,.0f} events/s")
    _exit_if_interrupted(report.stopped_by)
    if report.sent == 0 and report.skipped:
        raise typer.Exit(1)  # nothing usable: most likely the wrong file or --format


@cli.command(cls=_Command)
def tail(
    from_beginning: bool = typer.Option(False, "--from-beginning",
                                        help="Start at the oldest retained change (default: only new ones)."),
    max_changes: int = typer.Option(0, "--max", min=0, help="Stop after this many changes (0 = until Ctrl-C)."),
    customer: Optional[str] = typer.Option(None, "--customer", help="Only this customer's changes."),
    as_json: bool = typer.Option(False, "--json", help="Print the raw JSON of each change, one per line."),
) -> None:
    """Show segment changes as they are published (no consumer group: nothing is committed)."""
    from streams.tail import printers, run_tail

    _setup_logging("warning")
    settings = Settings()
    _require_bootstrap(settings, "tail needs the broker the worker publishes to")
    topic = settings.topics.name("segment_changes")
    on_change, on_invalid = printers(as_json)
    typer.secho(f"tailing {topic} on {settings.bootstrap_servers}"
                f"{' from the beginning' if from_beginning else ''} (Ctrl-C stops)", err=True, fg="cyan")
    with _kafka_unreachable_said_once(settings):
        stats = asyncio.run(run_tail(
            settings.broker(), topic, on_change, on_invalid, from_beginning=from_beginning,
            max_changes=max_changes, customer=customer, client_kwargs=settings.kafka_client_kwargs(),
        ))
    typer.secho(f"{plural(stats.shown, 'change')} shown, {plural(stats.invalid, 'invalid message')} skipped",
                err=True, fg="cyan")
    _exit_if_interrupted(stats.stopped_by)


@cli.command(cls=_Command)
def segments(
    url: Optional[list[str]] = typer.Option(None, "--url", metavar="URL", help="A worker's web address (repeat for every worker "
                                            "of the group; default: this machine's, on SEGSTREAM_WORKER__WEB_PORT)."),
    events: Optional[Path] = typer.Option(None, "--events", exists=True, dir_okay=False,
                                          help="Replay this contract JSONL offline instead of asking workers."),
    as_of: Optional[str] = typer.Option(None, "--as-of", help="With --events: ISO-8601 time the figures are "
                                        "as of (UTC if no offset; default: the latest event's time)."),
    fmt: str = typer.Option("table", "--format", help="table (terminal), markdown or html."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the report here instead of printing it."),
    partial: bool = typer.Option(False, "--partial", help="With --url: report the partitions the workers given "
                                 "count, when some of the group's are missing (refused otherwise)."),
) -> None:
    """Each segment's KPIs (size, revenue, CLV, retention, NPS, cost to serve, CAC) and its viability
    scorecard, saying which segments fail which criterion.

    From workers, every partition of the group must be counted once: two workers counting the
    same one (a worker given twice, a rebalance under way) are refused, and so are missing
    partitions unless --partial is given."""
    from schemas.errors import ConfigurationError
    from streams.segments_report import FORMATS, from_events, from_workers, render

    _setup_logging("warning")
    if fmt not in FORMATS:
        raise typer.BadParameter(f"{fmt!r}: choose one of {', '.join(FORMATS)}", param_hint="--format")
    if events is not None and url:
        raise typer.BadParameter("give --url or --events, not both", param_hint="--events")
    if as_of is not None and events is None:
        raise typer.BadParameter("--as-of needs --events (workers report as of their own clock)", param_hint="--as-of")
    if partial and events is not None:
        raise typer.BadParameter("--partial is for workers (--url): a replay counts every customer", param_hint="--partial")
    _writable_outputs(out=out)
    settings = Settings()
    try:
        if events is not None:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            at = _parse_as_of(as_of) if as_of else _latest_event_time(events)
            console = _console(stderr=True)
            with Progress(TextColumn("replaying"), BarColumn(), TimeRemainingColumn(), console=console,
                          transient=True, disable=not console.is_terminal) as progress:
                task = progress.add_task("replay", total=events.stat().st_size)
                report = from_events(events, at, settings.engine, on_bytes=lambda n: progress.advance(task, n))
        else:
            report = from_workers(url or [f"http://127.0.0.1:{settings.worker.web_port}"], partial=partial)
    except ConfigurationError as exc:
        typer.secho(f"segstream segments: {exc}", err=True, fg="red")
        raise typer.Exit(2) from None
    width = shutil.get_terminal_size((160, 40)).columns  # rich fits the tables to it (wrapping labels)
    text = render(report, settings.engine.scorecard, fmt, width=width)
    if out is None:
        typer.echo(text)
    else:
        out.write_text(text, encoding="utf-8")
        typer.secho(f"{fmt} report of {plural(report.kpis.population, 'customer')} -> {out}", err=True, fg="cyan")


def _latest_event_time(path: Path) -> float:
    """The latest ``timestamp`` of the valid lines of ``path`` (the default as-of of an offline report)."""
    from schemas.events import EventValidationError, parse_event
    from streams.replay import iter_jsonl

    latest = None
    for _, raw in iter_jsonl(path):
        try:
            ts = parse_event(raw).timestamp.timestamp()
        except EventValidationError:
            continue
        latest = ts if latest is None else max(latest, ts)
    if latest is None:
        raise typer.BadParameter(f"{path} holds no valid event", param_hint="--events")
    return latest


def _parse_as_of(value: str) -> float:
    from datetime import datetime, timezone

    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"not an ISO-8601 time: {value!r}") from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    return ts.timestamp()


@cli.command(cls=_Command)
def replay(
    events: Path = typer.Argument(..., exists=True, dir_okay=False, help="Contract JSONL (mixed types, any order)."),
    as_of: str = typer.Option(..., "--as-of", help="ISO-8601 time (UTC if no offset); later events are not applied."),
    profiles_out: Path = typer.Option(..., "--profiles-out", help="Write one JSON profile per customer here."),
    changes_out: Optional[Path] = typer.Option(None, "--changes-out", help="Write the segment changes (JSONL) here."),
    snapshot_out: Optional[Path] = typer.Option(None, "--snapshot-out", help="Write the final model snapshot (JSON) here."),
    rejects_out: Optional[Path] = typer.Option(None, "--rejects-out", help="Write every invalid line (number, error) here."),
    show_rejects: int = typer.Option(20, help="Invalid lines printed to the terminal (all are counted)."),
) -> None:
    """Replay events offline through the same engine as the worker and write per-customer profiles."""
    from rich.markup import escape
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    from streams.replay import run_replay

    _setup_logging("warning")
    _writable_outputs(profiles_out=profiles_out, changes_out=changes_out, snapshot_out=snapshot_out,
                      rejects_out=rejects_out)
    settings = Settings()
    as_of_ts = _parse_as_of(as_of)
    console = _console(stderr=True)
    # Off when stderr is not a terminal, as for produce: a transient bar would leave an empty line.
    with Progress(TextColumn("replaying"), BarColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("replay", total=events.stat().st_size)
        report = run_replay(events, as_of_ts, settings.engine, profiles_out,
                            on_bytes=lambda n: progress.advance(task, n), changes_out=changes_out,
                            snapshot_out=snapshot_out)
    for rej in report.rejected[:show_rejects]:
        console.print(f"[yellow]line {rej.line}[/]: {escape(rej.error)}", markup=True, highlight=False)
    if report.invalid > show_rejects:
        console.print(f"... and {plural(report.invalid - show_rejects, 'more invalid line')}"
                      + (f" (all in {rejects_out})" if rejects_out else " (use --rejects-out to list them all)"))
    if rejects_out:
        import orjson

        rejects_out.write_bytes(b"".join(orjson.dumps({"line": r.line, "error": r.error}) + b"\n"
                                         for r in report.rejected))
    val = report.valuation or {}
    console.print(
        f"{plural(report.lines, 'event')} in {report.seconds:.1f}s ({report.events_per_s:,.0f}/s): "
        f"{report.applied:,} applied, {plural(report.duplicates, 'duplicate')}, {report.after_as_of:,} after as-of, "
        f"{report.invalid:,} invalid; {plural(report.customers, 'customer')} -> {profiles_out}"
    )
    console.print(f"BG/NBD (days): {val.get('beta_geo') or 'not fitted'}; "
                  f"Gamma-Gamma: {val.get('gamma_gamma') or 'not fitted'}", highlight=False)
    model = (f"model version {report.model_version}" if report.model_version is not None
             else f"no clustering model ({report.no_model})")
    console.print(f"{plural(report.changes, 'segment change')} ({plural(report.sweeps, 'event-time sweep')}); {model}"
                  + (f"; snapshot -> {snapshot_out}" if snapshot_out else ""), highlight=False)
    if report.invalid:
        raise typer.Exit(1 if report.applied == 0 else 0)


@cli.command(cls=_Command)
def generate(
    out: Path = typer.Option(..., "--out", help="Write contract JSONL here."),
    customers: int = typer.Option(10_000, min=1, help="Number of customers."),
    seed: int = typer.Option(42, help="Random seed: the same seed gives the same events."),
    activity: float = typer.Option(1.0, min=0.01, help="Scales purchase and engagement rates."),
    personas_out: Optional[Path] = typer.Option(None, help="Write customer_id -> persona (ground truth) here."),
    profiles: bool = typer.Option(True, "--profiles/--no-profiles",
                                  help="Profile events (traits that go with the personas) besides the behaviour; "
                                       "--no-profiles: the behaviour events alone, as before profiles existed."),
    traits_out: Optional[Path] = typer.Option(None, help="Write customer_id -> final traits (ground truth) here."),
    end: str = typer.Option("2026-01-01T00:00:00Z", "--end", show_default=False,
                            help="The history ends here: ISO-8601 (UTC if no offset) or 'now'; default "
                            "2026-01-01. For a worker on the wall clock, end it now, or every customer looks lapsed."),
) -> None:
    """Generate a synthetic population with known personas as contract events (sorted by time)."""
    import orjson

    from models.synthetic import generate_population, iter_jsonl

    if traits_out and not profiles:
        raise typer.BadParameter("there are no traits without profiles", param_hint="--traits-out")
    _writable_outputs(out=out, personas_out=personas_out, traits_out=traits_out)
    started = time.monotonic()
    end_ts = time.time() if end == "now" else _parse_as_of(end)
    pop = generate_population(customers, seed=seed, end=end_ts, activity=activity, profiles=profiles)
    with out.open("wb") as f:
        f.writelines(iter_jsonl(pop.events))
    if personas_out:
        personas_out.write_bytes(orjson.dumps(pop.personas))
    if traits_out:
        traits_out.write_bytes(orjson.dumps(pop.traits))
    typer.echo(f"{plural(len(pop.events), 'event')} for {plural(customers, 'customer')} up to {pop.end_iso} -> {out} "
               f"({time.monotonic() - started:.1f}s)", err=True)


@cli.command(cls=_Command)
def bench(
    customers: int = typer.Option(3000, min=10, help="Synthetic customers (their events are the messages); at "
                                  "least as many as the first training needs (300 by default)."),
    seed: int = typer.Option(1, help="Random seed of the population."),
    activity: float = typer.Option(1.0, min=0.01, help="Scales purchase and engagement rates."),
    partitions: int = typer.Option(4, min=1, help="Partitions of the input topics."),
    latency_seconds: float = typer.Option(20.0, min=1.0, help="Duration of the fixed-rate latency phase."),
    probe_share: float = typer.Option(0.1, min=0.01, max=1.0, help="Share of the latency phase's messages "
                                      "that are probes (brand-new customers, one purchase each)."),
    memory_customers: str = typer.Option("100000,1000000", help="Table sizes for the memory per customer "
                                         "(comma-separated)."),
    json_out: Optional[Path] = typer.Option(None, "--json-out", help="Write every figure as JSON here."),
    run_dir: Optional[Path] = typer.Option(None, help="Worker log, broker data, kept (default: a new temp dir, "
                                           "removed when the run completes)."),
    keep: bool = typer.Option(False, "--keep", help=_KEEP_HELP.format(what="run completes")),
    batch_floor: bool = typer.Option(False, "--batch-floor", help="Also measure the faust floor with "
                                     "batch delivery (worker.delivery=batch)."),
) -> None:
    """Throughput of the engine, the worker and raw Kafka side by side; latency; memory.

    Engine in process, worker end to end and raw aiokafka pass-through on the same broker and
    messages; latency at half the worker's throughput; memory per customer. Ratios last."""
    from rich.table import Table

    from streams.harnesses import bench as b

    _setup_logging("warning")
    try:
        sizes = tuple(int(x) for x in memory_customers.split(",") if x.strip())
    except ValueError:
        raise typer.BadParameter("comma-separated integers", param_hint="--memory-customers") from None
    # The worker is measured with a model in force: fewer customers than its first training needs
    # would wait for one that never comes.
    needed = Settings().engine.segmentation.min_customers_to_train
    if customers < needed:
        raise typer.BadParameter(f"{customers}: the worker trains its first model at {needed} customers "
                                 "(SEGSTREAM_ENGINE__SEGMENTATION__MIN_CUSTOMERS_TO_TRAIN) and is measured with one; "
                                 f"give at least {needed}", param_hint="--customers")
    # A run that ends is a pass (a goal missed is a figure, not a failure); an error keeps the dir.
    with _check_directory(run_dir, "segstream-bench-", keep) as work_dir:
        config = b.BenchConfig(customers=customers, seed=seed, activity=activity, partitions=partitions,
                               latency_seconds=latency_seconds, probe_share=probe_share, memory_customers=sizes,
                               work_dir=work_dir, batch_floor=batch_floor)
        try:
            results = b.run(config, log=lambda msg: typer.secho(msg, err=True, fg="cyan"))
        except (RuntimeError, TimeoutError) as exc:  # a worker died or never got ready or trained
            typer.secho(f"bench: FAILED: {str(exc).splitlines()[0]} (logs in {work_dir})", err=True, fg="red")
            raise typer.Exit(1) from None
    if json_out:
        json_out.write_bytes(b.to_json(results))
    table = Table(title=f"segstream bench ({results['seconds']:.0f} s)")
    for column in ("figure", "value", "detail"):
        table.add_column(column)
    for row in b.figure_rows(results):
        table.add_row(*row)
    _console(highlight=False).print(table)
    for line in b.summary_lines(results):
        typer.echo(line)


def _run_check(name: str, check: Callable[[Path, Callable[[str], None]], Any], run_dir: Optional[Path],
               json_out: Optional[Path], keep: bool = False) -> None:
    """Run a long reliability check: progress on stderr, the report on stdout, exit 1 if it failed.

    Its work dir is ``run_dir`` or a temporary one, removed if the check passes (see
    :func:`_check_directory`); a failure's line names it."""
    _setup_logging("warning")
    with _check_directory(run_dir, f"segstream-{name}-", keep) as work_dir:
        typer.secho(f"work dir (logs, broker data): {work_dir}", err=True, fg="cyan")
        try:
            report = check(work_dir, lambda msg: typer.secho(msg, err=True, fg="cyan"))
        except (RuntimeError, TimeoutError) as exc:  # a worker died or never got ready: the check failed
            typer.secho(f"{name} test: FAILED: {str(exc).splitlines()[0]} (logs in {work_dir})", err=True, fg="red")
            raise typer.Exit(1) from None
        if json_out:
            json_out.write_bytes(report.to_json())
        for line in report.lines():
            typer.echo(line)
        if not report.ok:
            typer.secho(f"{name} test: logs in {work_dir}", err=True, fg="red")
            raise typer.Exit(1)


@cli.command("crash-test", cls=_Command)
def crash_test(
    customers: int = typer.Option(300, min=10, help="Synthetic customers in the known stream."),
    kills: int = typer.Option(10, min=0, help="SIGKILLs of the worker, each followed by a restart."),
    broker_restarts: int = typer.Option(1, min=0, help="Times the broker is stopped and restarted mid-stream."),
    rate: float = typer.Option(0.0, min=0.0, help="Events per second produced (0: spread over the kills)."),
    store: str = typer.Option("memory://", help="Table store of the worker: memory:// or rocksdb://."),
    seed: int = typer.Option(7, help="Random seed of the stream and of the kill times."),
    partitioner: PartitionerName = typer.Option("murmur2", metavar="<name>",
                                                help=_PARTITIONER_HELP.format(who="test's producer")),
    erasures: int = typer.Option(10, min=0, help="Customers erased through the API during the kills (each once "
                                                  "its events are sent); each must be gone at the end."),
    json_out: Optional[Path] = typer.Option(None, "--json-out", help="Write the report as JSON here."),
    run_dir: Optional[Path] = typer.Option(None, help="Broker data and worker logs, kept (default: a new temp dir, "
                                           "removed after a passing run)."),
    keep: bool = typer.Option(False, "--keep", help=_KEEP_HELP.format(what="check passes")),
) -> None:
    """Kill the worker and restart the broker mid-stream, then check that nothing was lost.

    Kills the worker (SIGKILL) at random points and restarts the broker while a known stream
    flows, erasing customers meanwhile; then checks every customer against the ground truth and
    the changes for duplicates. Exits 1 if anything was lost, counted twice or contradicted."""
    from streams.harnesses import crash_test as ct

    plan = ct.CrashPlan(customers=customers, kills=kills, broker_restarts=broker_restarts, rate=rate,
                        store=store, seed=seed, partitioner=partitioner, erasures=erasures)
    _run_check("crash", lambda work_dir, log: ct.run(plan, work_dir, log), run_dir, json_out, keep)


@cli.command(cls=_Command)
def soak(
    minutes: float = typer.Option(30.0, min=0.1, help="Duration of the steady phase."),
    rate: float = typer.Option(300.0, min=1.0, help="Steady events per second."),
    burst_factor: float = typer.Option(10.0, min=1.0, help="The burst's rate as a multiple of the steady rate."),
    burst_seconds: float = typer.Option(30.0, min=1.0, help="Duration of the burst."),
    customers: int = typer.Option(300, min=10, help="Customers of the population whose events are cycled "
                                  "(their history should go round within the first quarter of the run)."),
    sample_seconds: float = typer.Option(30.0, min=1.0, help="Memory and backlog are sampled this often."),
    json_out: Optional[Path] = typer.Option(None, "--json-out", help="Write the report (with the curve) as JSON."),
    run_dir: Optional[Path] = typer.Option(None, help="Broker data and worker log, kept (default: a new temp dir, "
                                           "removed after a passing run)."),
    keep: bool = typer.Option(False, "--keep", help=_KEEP_HELP.format(what="check passes")),
) -> None:
    """A worker under a steady stream, then a burst: memory must stay flat and the backlog drain.

    A worker under a steady stream (memory sampled: it must stay flat), then a burst of
    BURST_FACTOR times the rate (the backlog must drain); every customer checked at the end.
    Uses KAFKA_BOOTSTRAP_SERVERS if set, else starts a local broker. Exits 1 on failure."""
    from streams.harnesses import soak as sk

    plan = sk.SoakPlan(minutes=minutes, rate=rate, burst_factor=burst_factor, burst_seconds=burst_seconds,
                       customers=customers, sample_s=sample_seconds)
    _run_check("soak", lambda work_dir, log: sk.run(plan, work_dir, log), run_dir, json_out, keep)


@schemas_cli.command("export", cls=_Command)
def schemas_export(
    directory: Optional[Path] = typer.Option(None, help="Target directory (default: schemas/json)."),
) -> None:
    """Write the JSON Schema files of every contract."""
    from schemas.export import SCHEMA_DIR, export

    for path in export(directory or SCHEMA_DIR):
        typer.echo(str(path))


def main() -> None:
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from models.rules import RuleDefinitionError

    try:
        cli(prog_name="segstream")  # also as python -m streams.cli, which click would name so
    except RuleDefinitionError as exc:  # the rules file, read when the engine is built
        for line in str(exc).splitlines():
            typer.secho(f"invalid configuration: SEGSTREAM_ENGINE__SEGMENTATION__RULES_FILE: {line.strip()}",
                        err=True, fg="red")
        raise SystemExit(2) from None
    except ValidationError as exc:  # Settings() read from the environment: name the variable
        if exc.title != "Settings":
            raise
        for line in settings_errors(exc):
            typer.secho(line, err=True, fg="red")
        raise SystemExit(2) from None
    except SettingsError as exc:  # pydantic-settings could not even decode a value (malformed JSON)
        for line in unparsable_settings(os.environ) or [f"invalid configuration: {exc}"]:
            typer.secho(line, err=True, fg="red")
        raise SystemExit(2) from None


def unparsable_settings(environ: Mapping[str, str]) -> list[str]:
    """One line per ``SEGSTREAM_`` variable whose value should be JSON (a section, a parameter set,
    a mapping such as the currency rates) or looks like it (an object or a list) but does not
    parse: pydantic-settings names only the top-level section ("engine") when it fails on one.

    >>> unparsable_settings({"SEGSTREAM_ENGINE__VALUE__CURRENCY_RATES": "{USD:1", "SEGSTREAM_X": "[1]"})
    ['invalid configuration: SEGSTREAM_ENGINE__VALUE__CURRENCY_RATES: not valid JSON (expecting property name enclosed in double quotes at line 1 column 2); expected a JSON object of names to numbers']
    """
    from streams.settings import expected_json, json_variables

    json_settings = json_variables()
    lines: list[str] = []
    for var, value in sorted(environ.items()):
        path = json_settings.get(var.upper())
        if not var.upper().startswith("SEGSTREAM_") or (path is None and value.strip()[:1] not in ("{", "[")):
            continue
        problem = _json_problem(value)
        if problem and problem.startswith("not valid JSON"):  # what else is wrong: the validation's errors
            expected = expected_json(path) if path else None
            lines.append(f"invalid configuration: {var}: {problem}" + (f"; expected {expected}" if expected else ""))
    return lines


def _json_problem(value: Any, text: bool = True) -> str | None:
    """Why ``value`` is not a JSON object, or None if it is one; ``text``: ``value`` is the text of
    a variable (parsed here), else a value already parsed from it.

    >>> _json_problem('{"r": 0.2'), _json_problem("[1, 2]"), _json_problem('{"r": 0.2}'), _json_problem("x", text=False)
    ("not valid JSON (expecting ',' delimiter at line 1 column 10)", 'a JSON array, not an object', None, 'a JSON string, not an object')
    """
    parsed = value
    if text and isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            return f"not valid JSON ({exc.msg.lower()} at line {exc.lineno} column {exc.colno})"
    if isinstance(parsed, dict):
        return None
    kind = {list: "array", tuple: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(parsed), "number")
    return f"a JSON {kind}, not an object"


#: pydantic's errors for a value that is not an object where a model or a mapping is expected: its
#: message names the internal class ("instance of BetaGeoPinned"), not what to write.
_NOT_AN_OBJECT = frozenset({"model_type", "model_attributes_type", "dict_type"})


def settings_errors(exc: Any, environ: Optional[Mapping[str, str]] = None) -> list[str]:
    """One line per invalid setting, named by the environment variable that was set: the setting's
    own, or the one above it whose JSON value holds it (``SEGSTREAM_ENGINE__VALUE__BETA_GEO={...}``:
    a key of the object is named as such, and the keys missing from one object are one line)."""
    from streams.settings import expected_json, unknown_variables

    given = {name.upper() for name in (os.environ if environ is None else environ)}
    lines: list[str] = []
    missing: dict[tuple[str, tuple[str, ...]], list[str]] = {}  # (variable, object's path) -> keys
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        if not loc:  # a check of the whole environment: its message names the variables
            lines.extend(f"invalid configuration: {problem}"
                         for problem in error["msg"].removeprefix("Value error, ").split("; "))
            continue
        bootstrap = len(loc) == 1 and loc[0].lower().endswith("bootstrap_servers")  # the field or an alias
        full = "KAFKA_BOOTSTRAP_SERVERS" if bootstrap else "SEGSTREAM_" + "__".join(loc).upper()
        # The variable set: the setting's own, or the nearest section above it given as JSON.
        depth = next((n for n in range(len(loc), 0, -1) if "SEGSTREAM_" + "__".join(loc[:n]).upper() in given),
                     len(loc))
        var = full if bootstrap else "SEGSTREAM_" + "__".join(loc[:depth]).upper()
        key = ".".join(loc[depth:])  # within that variable's JSON value
        value = error.get("input")
        secret = any(word in full for word in ("PASSWORD", "TOKEN", "SECRET"))
        shown = f" (got {value!r})" if isinstance(value, (str, int, float)) and not secret else ""
        message = error["msg"].removeprefix("Value error, ")
        inside = expected_json(loc[:-1]) if key else None  # what the object holding the key takes
        if error["type"] == "extra_forbidden":  # a name within a section that is no setting
            if not key:
                lines.extend(f"invalid configuration: {problem}" for problem in unknown_variables({var: ""}))
                continue
            message, shown = "not a key of this object", ""
        elif error["type"] == "missing" and key:
            missing.setdefault((var, tuple(loc[:-1])), []).append(loc[-1])
            continue
        elif error["type"] in _NOT_AN_OBJECT:
            problem = _json_problem(value, text=not key)  # the variable's text, or a value inside it
            message, shown, inside = (f"{problem}; " if problem else "") + f"expected {expected_json(loc)}", "", None
        where = f"{var}: key {key!r}: " if key else f"{var}: "
        lines.append(f"invalid configuration: {where}{message}{shown}" + (f"; expected {inside}" if inside else ""))
    for (var, path), keys in missing.items():
        within = ".".join(path[len(var.split("__")):])  # the object's own key within the variable, if any
        where = f"{var}: key {within!r}: " if within else f"{var}: "
        inside = expected_json(list(path))
        lines.append(f"invalid configuration: {where}missing {', '.join(keys)}" + (f"; expected {inside}" if inside else ""))
    return lines


if __name__ == "__main__":
    main()
