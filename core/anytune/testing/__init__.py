"""Emulators of the providers' HTTP APIs, for tests and for rehearsing scripts without spending money.

Each emulator is an ASGI app written from the provider's SDK types and published OpenAPI spec. They share a
clock (real, sped up, or stepped by each poll so tests never sleep), fault injection (429 with Retry-After,
5xx, slow answers, a connection dropped after the server did the work), a recorder of every exchange (to
check it against the spec), and a small server that runs them on 127.0.0.1 in a thread.

Needs the `emulators` extra (starlette, uvicorn, python-multipart).
"""
