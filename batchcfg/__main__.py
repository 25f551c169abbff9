"""``python -m batchcfg``: the same as the ``batchcfg`` command."""

from batchcfg.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
