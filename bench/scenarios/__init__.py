"""One module per scenario of issue 3; each exposes ``run(bench, scale, result)``."""
