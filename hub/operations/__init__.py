"""What an operator watches: queue statistics, the platform's dependencies and
processes, and the state gauges of ``/metrics`` — one set of queries for all three."""
