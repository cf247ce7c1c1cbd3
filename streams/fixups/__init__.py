"""Workarounds of library behaviour, in one room: every reach into faust's, mode's, aiokafka's or
prometheus-client's private internals lives in this package (river's in
``models/river_fixups.py``, so that ``models`` stays importable without the stream stack).
Anywhere else such a reach fails the lint of ``make test`` (ruff SLF001 and PLC2701, with a
per-file allowance for these modules only: ``pyproject.toml``).

Each module says what upstream does, what segstream needs instead and the test that proves it.
Versions are the pinned ones (``pyproject.toml``): faust-streaming 0.15.3, mode-streaming 0.7.1,
aiokafka 0.14.0, river 0.26.

=========================  =============================================  ==========================================
module                     why (upstream behaviour worked around)         can go when
=========================  =============================================  ==========================================
``kafka_transport``        faust drops fetched messages and commits past  faust-streaming stops committing past
                           the gap (``_add_gap``, ``_new_offset`` with    unprocessed offsets and seeks in its
                           ``_committed_offset``); it has no setting for  consumer thread; it gets fetch_min_bytes /
                           ``fetch_min_bytes``/``fetch_max_wait_ms``      fetch_max_wait_ms
                           (set on aiokafka's private fields); its
                           ``seek`` runs outside the consumer's thread
                           (``KeyError`` in aiokafka's fetched_records);
                           a held message leaves ``_unacked_messages``;  settings, and awaits a hook before
                           no hook before a commit (write-behind's        a commit
                           writes: ``_commit_tps`` overridden)
``durable_table``          faust's buffer flush before a commit gives up  faust's flush waits for every changelog
                           with changelog writes still queued             write, and writes table changes in
                           (``ProducerBuffer.flush_atmost``): the table   batches (or gives a bulk
                           keeps each write's future; faust writes a key  ``send_changelog``)
                           as one message through its buffer (180-300
                           us): ``stage``/``send_staged`` send whole
                           record batches (aiokafka's ``BatchBuilder``,
                           ``Producer._producer``)
``current_event``          a table write goes to the changelog partition  faust lets a table write name its
                           of faust's current event (the private          partition, or batch agents write each key
                           ``faust.streams._current_event``): in a batch  in its own message's context
                           it must be the customer's own message
``faust_producer``         ``flush`` waits out ``producer_linger`` for    aiokafka gets a public "send the open
                           each open batch; aiokafka's accumulator has    batches now"
                           no public "send now" (``_message_accumulator``)
``bounded_shutdown``       mode's graceful stop hangs for good with the   mode's Worker gets a shutdown deadline
                           broker away; the deadline hooks mode's
                           private ``_schedule_shutdown``
``quiet_monitor``          faust's Monitor keeps per-message statistics   faust lets an app turn its per-message
                           for its /stats pages on the hot path           statistics off
``prometheus_histogram``   prometheus-client has no weighted observe      prometheus-client gets one, or the batch
                           (``_sum``, ``_buckets``, ``_upper_bounds``)    engine (#20) observes once per batch
``batch_delivery``         faust delivers a message at a time (drain      faust-streaming hands an agent whole
                           loop -> conductor -> Event -> stream -> ack),  fetched batches per partition with
                           ~100 us each, and moves its read offset for a  bulk acks (no such API in 0.15.3) and
                           message cut off by a rebalance (holes);        stops moving its read offset past
                           ``worker.delivery = "batch"`` overrides        messages it did not deliver
                           ``Consumer._drain_messages``, delivers each
                           partition in order (seek epochs, each from a
                           known start), acks in
                           bulk into ``_acked``/``_acked_index``
``models/river_fixups``    river's PageHinkley exposes only               river exposes the statistic
                           ``drift_detected``, not its statistic
=========================  =============================================  ==========================================
"""

__all__: list[str] = []
