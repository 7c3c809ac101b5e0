"""Real I/O at the rim: Redis, clocks, consoles; and the in-memory twins of each port."""
