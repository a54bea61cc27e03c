"""What an operator watches: Prometheus metrics and OpenTelemetry spans. The lowest layer: every other records
into it, and it imports nothing of ours."""
