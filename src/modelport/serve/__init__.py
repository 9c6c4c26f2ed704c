"""Ways to serve a registered model, each a surface over the scoring core
(:mod:`modelport.scoring`):

- :mod:`modelport.serve.batch`: score a file or table into files or a lookup table, in
  bounded memory, in parallel, resumable (``modelport predict``);
- :mod:`modelport.serve.spark`: the same batch job on Apache Spark (``--engine spark``);
- :mod:`modelport.serve.lookup`: read the scores a batch job stored, by id
  (``modelport lookup``);
- :mod:`modelport.serve.http`: the web service (``modelport serve``);
- :mod:`modelport.serve.stream`: score events from a broker and publish the outputs, at
  least once (``modelport stream``);
- :mod:`modelport.serve.trigger`: score database rows as they are inserted or updated, by
  a worker or inside the database (``modelport trigger``).

Nothing heavy is imported here; each surface imports what it needs when it runs.
"""
