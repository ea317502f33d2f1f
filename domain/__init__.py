"""The use cases: one function per thing an operator (API, dashboard, CLI) asks of the imageserver.

Between the front ends (services/ handlers, appliance/ commands) and the model (state/): a use case
reads and decides through state/ (batched: one query per table for a page, never one per host),
returns typed results (dataclasses) and raises the domain errors of domain.errors. It holds no SQL.
"""
