"""asyncio adapters: the only natkit code that touches sockets and the clock."""
