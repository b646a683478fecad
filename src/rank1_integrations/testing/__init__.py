"""Test helpers shipped with the package: a loopback fake rank1 server."""

from .._spawn import free_port
from .fake_server import FakeRank1Server, fake_server_process, overlap_score

__all__ = ["FakeRank1Server", "fake_server_process", "free_port", "overlap_score"]
