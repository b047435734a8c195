"""Benchmarks: each reports ratios against a baseline measured in the same run.

``api`` (a running server under load), ``page`` (one LLM page against the rules page),
``llm`` (the vLLM engine on the page workload), ``speed`` (what the grammar costs a
decoding pass). Retrieval's own benchmark is :mod:`retrieval.benchmark`.
"""
