from __future__ import annotations

from bench.run import entry

if __name__ == "__main__":
    entry()
