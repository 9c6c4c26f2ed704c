"""Where data comes from and goes to, named by a path or a URL.

- :mod:`modelport.io.tables`: whole tables from files, folders of Parquet files and SQL
  (:func:`read_table`, :func:`write_table`), and the URL helpers the rest of ``io`` shares;
- :mod:`modelport.io.chunks`: a table read chunk by chunk in bounded memory, with the same
  chunk boundaries every time (Parquet, CSV, JSONL, SQL), and the rows a reader found
  unusable (:func:`~modelport.io.chunks.reader_rejects`);
- :mod:`modelport.io.sinks`: where a batch job's scores go, chunk by chunk (files, and
  lookup tables upserted by id), so that a crash loses and repeats nothing;
- :mod:`modelport.io.events`: one JSON or msgpack object per broker message, and the
  SIGTERM/SIGINT handling every broker loop shares;
- :mod:`modelport.io.brokers`: one adapter per message broker (Redis Streams, NATS
  JetStream, RabbitMQ, MQTT, Kafka) behind one source and sink contract.

Nothing here knows a model format or a surface.
"""

from modelport.io.tables import read_table, write_table

__all__ = ["read_table", "write_table"]
