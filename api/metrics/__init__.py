"""The API's Prometheus metrics: platform state read at scrape time (runs and steps by
status, broker queue depths) and the API's own HTTP requests. Served at GET /metrics."""
