"""Example data sets, generated on the fly so they are reproducible and any size.

- :mod:`modelport.datasets.churn`: telecom customers and whether they left.
"""
