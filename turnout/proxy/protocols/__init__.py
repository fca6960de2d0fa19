"""Sans-IO protocol code: bytes in, events out. No asyncio, sockets or clocks here."""
