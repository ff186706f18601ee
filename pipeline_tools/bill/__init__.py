"""The monthly bill against the naive stack: its model, prices, renderers and chart.

``python -m pipeline_tools.cost`` is the command (``pipeline_tools/cost.py``).
"""
