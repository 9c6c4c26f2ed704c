"""Where data comes from and goes to, named by a path or a URL.

- :mod:`modelport.io.tables`: whole tables from files, folders of Parquet files and SQL.
"""

from modelport.io.tables import read_table, write_table

__all__ = ["read_table", "write_table"]
