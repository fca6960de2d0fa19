"""asyncio glue between sockets and the sans-IO codecs."""
