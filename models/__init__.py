"""The pure engine: no Kafka, no asyncio, so the worker, the offline replay and the benchmarks run
the same code and give the same answers.

Where each part lives, in the order an event meets them:

============================  ==========================================================================
``pipeline``                  the whole engine for one event: value state, features, segments, change records
``state``, ``decay``,         the per-customer value state (RFM, engagement, feedback, cost to serve), its
``dedupe``, ``state_cache``   order-free decayed sums, the ids of recent events, decoded states kept warm
``engine``, ``valuation``,    applying events; the population's BTYD statistics and the fitted BG/NBD and
``btyd/``                     Gamma-Gamma models (P(alive), expected purchases, CLV)
``features``, ``profile``     the clustering features and the profile of a customer as of a time
``segmentation``              **the segmenter**: trains the cluster model on sampled customers, decides whether
                              a candidate is adopted, snapshots it, assigns customers
``clustering``                the k-means machinery under it (river's online k-means, batch restarts, scaling)
``membership``                one customer's cluster membership with margin, dwell and the return window
``segments``                  segment ids kept across model versions (matching, born / retired / merged)
``snapshot``                  the versioned model every worker assigns with (what the trainer publishes)
``trainer``                   the one trainer of a worker group (sample, schedule, publish)
``labels``, ``figures``       words a segment's figures back, and the figures labels and drivers quote
``rules/``, ``thresholds``    declarative rule segments and their percentile thresholds
``drift``                     drift detection of features, distances and segment shares
``kpis``, ``scorecard``,      KPIs per segment (mergeable sums over a sweep), the viability scorecard judged
``segment_report``            on them, and the report a marketer reads (terminal, Markdown, HTML)
``cdnow``, ``synthetic``      the CDNOW sample and the persona population (tests, demo, benchmarks)
``config``                    the engine's typed settings
============================  ==========================================================================
"""
