"""FER-TMS hub: the daemon that broadcasts chat messages to everyone in a room.

Modules: :mod:`hub.protocol` (wire format, shared with the client),
:mod:`hub.rooms` (sans-I/O room logic), :mod:`hub.storage` (memory or SQLite),
:mod:`hub.server` (the socket layer and the embeddable :func:`hub.server.serve_hub`).
"""
