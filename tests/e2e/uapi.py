#!/usr/bin/env python3
"""Sends one request to a WireGuard UAPI socket and prints the answer, for what `wg` cannot say.

Usage: uapi.py SOCKET LINE...   e.g. uapi.py /var/run/wireguard/wg0.sock set=1 endpoint=tcp://10.77.0.2:443
The request is the LINEs followed by a blank line; the answer ends at the blank line after `errno=N`.
Gives up after 5 s, so a daemon that never answers cannot hang a scenario.
"""

import socket
import sys
import time

TIMEOUT_SECONDS = 5.0
MAX_ANSWER_BYTES = 1 << 20


def complete(answer):
    """Every answer ends with `errno=N` and a blank line; the daemon may keep the connection open."""
    return answer.endswith(b"\n\n") and (answer.startswith(b"errno=") or b"\nerrno=" in answer)


def exchange(path, request):
    deadline = time.monotonic() + TIMEOUT_SECONDS
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT_SECONDS)
        sock.connect(path)
        sock.sendall(request)
        answer = b""
        while not complete(answer):
            left = deadline - time.monotonic()
            if left <= 0 or len(answer) > MAX_ANSWER_BYTES:
                raise OSError(f"no complete answer within {TIMEOUT_SECONDS:.0f} s: {answer[-200:]!r}")
            sock.settimeout(left)
            chunk = sock.recv(65536)
            if not chunk:
                raise OSError(f"connection closed before the answer was complete: {answer[-200:]!r}")
            answer += chunk
    return answer


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    path, lines = sys.argv[1], sys.argv[2:]
    request = "".join(line + "\n" for line in lines) + "\n"
    try:
        answer = exchange(path, request.encode())
    except OSError as e:
        sys.exit(f"uapi.py: {path}: {e}")
    sys.stdout.write(answer.decode(errors="replace"))


if __name__ == "__main__":
    main()
