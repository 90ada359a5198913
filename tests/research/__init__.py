"""Tests of the research code (``benchmarks.research``) and its configs.

The library's and the product's tests (``tests/*.py``) do not import
``benchmarks.research``; ``tests/test_layout.py`` checks it.
"""
