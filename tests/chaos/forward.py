"""Test-only TCP relay between network namespaces: listens on
LISTEN_HOST:PORT for each PORT and relays each connection to
TARGET_HOST:PORT, byte for byte.

    python3 forward.py LISTEN_HOST TARGET_HOST PORT [PORT...]

The fault suite runs one inside a worker's network namespace (its
127.0.0.1 ports relayed to the host's end of a veth link) and one on the
host (that end relayed to the services on 127.0.0.1), so that the worker
reaches PostgreSQL, Kafka (whose advertised 127.0.0.1 addresses stay
right), the model and the tools as usual, until the link is dropped.
"""
import asyncio
import sys

LISTEN, TARGET, PORTS = sys.argv[1], sys.argv[2], [int(p) for p in sys.argv[3:]]


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def relay(port, client_r, client_w):
    try:
        server_r, server_w = await asyncio.open_connection(TARGET, port)
    except OSError:
        client_w.close()
        return
    await asyncio.gather(pipe(client_r, server_w), pipe(server_r, client_w))


async def main():
    servers = [await asyncio.start_server(lambda r, w, p=p: relay(p, r, w), LISTEN, p)
               for p in PORTS]
    print(f"forwarding {LISTEN} -> {TARGET}: {' '.join(map(str, PORTS))}", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


asyncio.run(main())
