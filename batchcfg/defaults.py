"""The defaults of every option, in one place (CONTRACT.md's, and the ones batchcfg adds).

Kept free of imports, so that ``batchcfg --help`` can show them without loading aiohttp or pandas.
"""

DEFAULT_RATE = 10.0          # request starts per second; 0 = no limit
AUTO = 0                     # --concurrency auto: enough in flight to sustain --rate
DEFAULT_CONCURRENCY = AUTO   # requests in flight (CONTRACT.md's 8 is what auto starts from)
AUTO_START_CONCURRENCY = 8
AUTO_MAX_CONCURRENCY = 256
AUTO_UNLIMITED_CONCURRENCY = 32  # auto with --rate 0: no rate to follow
DEFAULT_MAX_RETRIES = 5      # so at most 6 attempts
DEFAULT_TIMEOUT = 30.0       # seconds per attempt
DEFAULT_MAX_ROWS = 1_000_000
SANDBOX_HOST = "127.0.0.1"
SANDBOX_PORT = 8765
