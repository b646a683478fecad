"""SDK clients made on a user's event loop are closed when that loop shuts down."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import asyncio, gc
    from rank1_integrations import Rank1Client
    from rank1_integrations.testing import FakeRank1Server

    with FakeRank1Server() as server:
        client = Rank1Client(base_url=server.base_url, cache=None)

        async def main():
            return await client.arerank("moon tides", ["moon tides", "cats"])

        for _ in range(2):  # two loops, no aclose(): each loop's session must be closed
            assert [j.relevant for j in asyncio.run(main())] == [True, False]
        gc.collect()
    print("done")
""")


def test_asyncio_run_without_aclose_leaves_no_open_session():
    result = subprocess.run(
        [sys.executable, "-W", "always::ResourceWarning", "-c", SCRIPT],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "done"
    assert "Unclosed" not in result.stderr, result.stderr
