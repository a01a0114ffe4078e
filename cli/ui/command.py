"""`golfq ui`: serve the dashboard on loopback until interrupted."""

from __future__ import annotations

import errno
import time
import webbrowser
from typing import Annotated

import typer

from golfq.cli.console import QueueOption, WorkDirOption, note, queue, work_dir
from golfq.core.errors import GolfqError

app = typer.Typer(add_completion=False)


@app.command()
def ui(
    port: Annotated[int, typer.Option("--port", metavar="N", help="The port to serve on (0: any free one).")] = 8765,
    host: Annotated[str, typer.Option("--host", metavar="ADDR",
                                      help="The address to bind; anything but loopback lets others read the queue."
                                      )] = "127.0.0.1",
    allow_actions: Annotated[bool, typer.Option("--allow-actions",
                                                help="Offer cancel, requeue and promote (read-only without it).")
                             ] = False,
    extra_hosts: Annotated[list[str] | None, typer.Option(
        "--allowed-host", metavar="NAME",
        help="Another Host name to answer (the name others reach this machine by); repeatable.")] = None,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the page in this machine's browser.")] = False,
    queue_url: QueueOption = None,
    work_dir_option: WorkDirOption = None,
) -> None:
    """Serve a web dashboard of the queue: fronts, runs, live curves, parallel coordinates, compare, operations.

    Every asset is served from the installed package, so it works on a machine without internet.

    Example: golfq ui --queue sqlite:///.golfq/golfq.db --port 8765
    """
    import socket

    import uvicorn

    from golfq.cli.ui.server import allowed_hosts, make_app
    from golfq.producer.client import Client

    if not 0 <= port <= 65535:
        raise GolfqError(f"ui --port: {port} is not a port number")
    with queue(queue_url) as broker:
        client = Client(broker=broker)
        app_ = make_app(client, work_dir(work_dir_option), allow_actions, allowed_hosts(host, extra_hosts or ()))
        began = time.monotonic()
        index = app_.state.dashboard.index
        index.refresh()  # before the first page asks: listing a big queue takes a moment
        note(f"golfq ui: {len(index.rows):,} job(s) read in {time.monotonic() - began:.1f} s")
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(128)  # connections wait for the server from here on, so the URL printed below works at once
        except OSError as error:
            sock.close()
            hint = "try --port 0" if error.errno == errno.EADDRINUSE else "check --host (an address of this machine)"
            raise GolfqError(f"ui: cannot serve on {host}:{port} ({error.strerror}); {hint}") from None
        bound = sock.getsockname()[1]
        url = f"http://{f'[{host}]' if ':' in host else host}:{bound}/"
        mode = "actions on" if allow_actions else "read-only"
        note(f"golfq ui: {client.url} at {url} ({mode}); Ctrl-C stops it")
        if open_browser:
            webbrowser.open(url)
        server = uvicorn.Server(uvicorn.Config(app_, log_level="warning", access_log=False))
        server.run(sockets=[sock])
