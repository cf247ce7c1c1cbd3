"""The Faust application: built from one Settings object, so tests can run several apps side by side."""

from __future__ import annotations

from dataclasses import dataclass

import faust

from streams.settings import Settings
from streams.topics import Topics, declare_topics


@dataclass
class SegstreamApp:
    app: faust.App
    settings: Settings
    topics: Topics


def broker_url(bootstrap: str) -> str:
    return ";".join(f"kafka://{server.strip()}" for server in bootstrap.split(","))


def create_app(settings: Settings) -> SegstreamApp:
    if not settings.bootstrap_servers:
        raise ValueError("no Kafka broker configured: set KAFKA_BOOTSTRAP_SERVERS")
    w = settings.worker
    app = faust.App(
        w.app_id,
        broker=broker_url(settings.bootstrap_servers),
        broker_credentials=None,
        store=w.store,
        datadir=str(w.data_dir),
        web_host=w.web_host,
        web_port=w.web_port,
        web_bind=w.web_host,
        topic_partitions=settings.topics.partitions,
        topic_replication_factor=settings.topics.replication_factor,
        processing_guarantee=w.processing_guarantee,
        # Concurrency stays 1 everywhere (faust-streaming #606 loses messages on commit otherwise).
        stream_buffer_maxsize=4096,
        consumer_auto_offset_reset="earliest",
        autodiscover=False,
        loghandlers=[],
    )
    topics = declare_topics(app, settings)
    from streams.agents import register_agents  # agents need the app and topics

    register_agents(app, settings, topics)
    return SegstreamApp(app=app, settings=settings, topics=topics)
