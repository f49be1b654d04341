"""Reaching the Hugging Face hub for the real models, fast or not at all: one reachability check with a short
timeout before any download (a black-holed network otherwise hangs the hub clients for minutes), and the one message
of a real model that could not be loaded. Used by diffnb.zoo."""
from __future__ import annotations

import os

HUB_TIMEOUT_S = 5.0   # how long the one reachability check before a real model's download waits for the hub


def access() -> tuple:
    """({} or {"local_files_only": True}, a note for the error message). With HF_HUB_OFFLINE set, or when the hub
    (or the proxy in HTTPS_PROXY / ALL_PROXY) does not accept a connection within HUB_TIMEOUT_S, real models load from
    the local cache only, so that a black-holed network fails in seconds instead of in the hub clients' minutes."""
    import huggingface_hub.constants as constants
    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return {"local_files_only": True}, "HF_HUB_OFFLINE is set, so only the local cache is read"
    target = next((os.environ[k] for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
                   if os.environ.get(k)), constants.ENDPOINT)
    if reachable(target, HUB_TIMEOUT_S):
        return {}, ""
    return {"local_files_only": True}, (f"the hub ({target}) did not answer within {HUB_TIMEOUT_S:g} s, so only the "
                                        f"local cache is read")


def reachable(url: str, timeout: float) -> bool:
    """Whether a TCP connection to url's host opens within `timeout` seconds, name lookup included (run in a
    thread, since a lookup on a black-holed network has no timeout of its own)."""
    import socket
    import threading
    from urllib.parse import urlparse
    u = urlparse(url if "://" in url else f"http://{url}")
    if not u.hostname:
        return False
    port = u.port or (443 if u.scheme == "https" else 80)
    result = []

    def attempt():
        try:
            socket.create_connection((u.hostname, port), timeout=timeout).close()
            result.append(True)
        except (OSError, ValueError):
            result.append(False)
    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def error(name: str, hub_id: str, size: str, toy: str, e: Exception, note: str, needs: str) -> RuntimeError:
    """The one message of a real model that could not be loaded: what, why, and the toy model to use instead."""
    cause = f"{type(e).__name__}: {str(e)[:200]}"
    why = f"{note} ({cause})" if note else cause
    article = "" if size.startswith("about") else "a "
    return RuntimeError(f"could not load {name} ({hub_id}, {article}{size} download, needs {needs}): {why}. "
                        f"In toy mode use zoo.load({toy!r}) instead.")
