"""Small socket helpers shared by every listener we start (simulators, broker, central)."""

from __future__ import annotations

import asyncio


class PortInUseError(OSError):
    """The port is taken by another process: choose another one (flag or site file)."""


async def ensure_port_free(host: str, port: int, hint: str = "pick another port") -> None:
    """Refuse early, naming the port, rather than let a library fail obscurely at bind time."""
    try:
        _r, w = await asyncio.wait_for(asyncio.open_connection(host, port), 0.5)
    except (OSError, TimeoutError):
        return
    w.close()
    raise PortInUseError(f"{host}:{port} is already in use by another process; {hint}")


async def wait_listening(host: str, port: int, within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            _r, w = await asyncio.open_connection(host, port)
        except OSError:
            if asyncio.get_running_loop().time() > deadline:
                raise PortInUseError(f"nothing started listening on {host}:{port}") from None
            await asyncio.sleep(0.02)
            continue
        w.close()
        await w.wait_closed()
        return
