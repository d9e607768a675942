"""`recon-cli serve`: the HTTP service (recon.runtime.serve) on uvicorn (registered by recon.cli.main).

Only typer, pathlib and typing are imported here at load time; Starlette, uvicorn and the runtime when
it runs (pip install 'recon[serve]').
"""

from pathlib import Path
from typing import Optional

import typer


def serve(
    model: Optional[Path] = typer.Option(None, "--model", help="Model folder from `recon-cli export` "
                                         "(default: the model installed with recon)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (0.0.0.0: every interface; "
                             "the default answers this machine only)."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="TCP port (0: any free one)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N (GPU N) or tensorrt."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads per network."),
    max_batch: int = typer.Option(8, "--max-batch", min=1, help="Pictures per network run (1: no batching)."),
    max_wait_ms: float = typer.Option(10.0, "--max-wait-ms", min=0, help="How long a request waits for "
                                      "others on their way (being uploaded) to share its network run; one "
                                      "that comes alone runs at once."),
    max_queue: int = typer.Option(64, "--max-queue", min=1, help="Requests waiting; more are answered 503."),
    max_upload_mb: float = typer.Option(20.0, "--max-upload-mb", min=0.001, help="Largest request body."),
    max_megapixels: float = typer.Option(25.0, "--max-megapixels", min=0.001, help="Largest picture."),
):
    """Serve reconstructions over HTTP: GET / (upload page with the 3D viewer), POST /reconstruct,
    GET /health, GET /metrics (Prometheus). Ctrl-C stops it."""
    from recon.cli import console as ui
    from recon.runtime.errors import InputError
    from recon.runtime.pipeline import Reconstructor

    try:
        import uvicorn

        from recon.runtime.serve import ServeLimits, create_app
        from recon.runtime.serve_batch import limit_allocator_arenas
    except ImportError as error:
        raise InputError(f"serve needs the serve extra: pip install 'recon[serve]' ({error.name} is missing)") from None
    check_address(host, port)  # before loading the model: a taken port is one error line, at once
    limits = ServeLimits(max_upload_bytes=int(max_upload_mb * 1e6), max_pixels=int(max_megapixels * 1e6),
                         max_batch=max_batch, max_wait_ms=max_wait_ms, max_queue=max_queue)
    limit_allocator_arenas()  # before any thread allocates: RSS stays flat under load (bench_serve.py)
    reconstructor = Reconstructor(model, device=device, threads=threads, batch=max_batch)
    ui.err.print(f"model {ui.esc(reconstructor.model.path)} on {', '.join(sorted(set(reconstructor.providers.values())))}; "
                 f"batches of up to {max_batch}, {max_wait_ms:g} ms wait; http://{host}:{port}/", soft_wrap=True)
    uvicorn.run(create_app(reconstructor, limits), host=host, port=port, log_level="warning")


def check_address(host: str, port: int) -> None:
    """InputError when uvicorn could not bind host:port (taken, or not an address of this machine)."""
    import socket

    from recon.runtime.errors import InputError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(infos[0][4])
    except OSError as error:
        raise InputError(f"--host {host} --port {port}: cannot listen there ({error.strerror or error})") from None
