"""Ways to serve a registered model: :mod:`modelport.serve.batch` scores files and tables,
:mod:`modelport.serve.lookup` reads the scores a batch job stored for lookups.

Nothing heavy is imported here; each surface imports what it needs when it runs.
"""
