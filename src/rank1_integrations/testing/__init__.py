"""Test helpers shipped with the package: a loopback fake rank1 server, and
:func:`default_sigint` for tests that interrupt a child process."""

import signal

from .._spawn import free_port
from .fake_server import FakeRank1Server, fake_server_process, overlap_score

__all__ = ["FakeRank1Server", "default_sigint", "fake_server_process", "free_port",
           "overlap_score"]


def default_sigint() -> None:
    """``preexec_fn`` of a child a test sends SIGINT: its default disposition back. A
    child inherits an ignored SIGINT (a shell's background job, ``nohup ... &``), and
    Python then installs no KeyboardInterrupt handler, so Ctrl-C would do nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
