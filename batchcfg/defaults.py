"""The defaults of every option, in one place (CONTRACT.md's, and the ones batchcfg adds).

Kept free of imports, so that ``batchcfg --help`` can show them without loading aiohttp or pandas.
"""

DEFAULT_RATE = 10.0          # request starts per second; 0 = no limit
DEFAULT_CONCURRENCY = 8      # requests in flight
DEFAULT_MAX_RETRIES = 5      # so at most 6 attempts
DEFAULT_TIMEOUT = 30.0       # seconds per attempt
DEFAULT_MAX_ROWS = 1_000_000
SANDBOX_HOST = "127.0.0.1"
SANDBOX_PORT = 8765
