"""``turnout serve``: the only CLI module that imports the supervisor."""

from __future__ import annotations

import asyncio
import logging
import sys

import uvloop

from turnout.config.sources import ConfigSource, FileSource, TextSource
from turnout.supervisor.main import ServeOptions, StartupError, Supervisor

log = logging.getLogger("turnout")


async def _serve(files: list[str], options: ServeOptions) -> int:
    samples: list[asyncio.Server] = []
    source: ConfigSource
    if files:
        source = FileSource(files)
    else:
        from turnout.samples import start_samples

        samples, text = await start_samples()
        source = TextSource(text, "<embedded defaults>")
        options.watch = False
    def greet() -> None:
        if not samples:
            return
        from turnout.samples import sample_curls

        lines = "\n".join(f"  {line}" for line in sample_curls(admin=options.admin_address))
        print(
            "\nTurnout is serving its embedded sample configuration with three sample "
            f"services.\nTry:\n{lines}\n\nStop with Ctrl-C. Serve your own manifests with "
            "`turnout serve -f FILE|DIR`.\n",
            file=sys.stderr,
            flush=True,
        )

    try:
        return await Supervisor(source, options).run(on_started=greet)
    except StartupError as exc:
        log.error("%s", exc)
        return 2
    finally:
        for server in samples:
            server.close()


def run_serve(files: list[str], options: ServeOptions) -> int:
    return uvloop.run(_serve(files, options))
