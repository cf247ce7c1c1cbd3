# segstream worker image (used by docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas schemas
COPY models models
COPY streams streams
COPY monitoring monitoring
COPY examples examples
# The rocksdb extra: docker-compose.yml runs the workers with SEGSTREAM_WORKER__STORE=rocksdb://.
RUN pip install --no-cache-dir ".[rocksdb]"
ENV SEGSTREAM_WORKER__WEB_HOST=0.0.0.0 \
    SEGSTREAM_WORKER__DATA_DIR=/var/lib/segstream
EXPOSE 6066
ENTRYPOINT ["segstream"]
CMD ["worker"]
