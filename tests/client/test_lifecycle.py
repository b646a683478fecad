"""Lifecycle: SDK clients made on a user's event loop are closed when that loop shuts down;
the sync API's background loop leaves nothing open and stops on Ctrl-C; an injected async
client stays on its own event loop."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
import time

import httpx
import openai
import pytest

from rank1_integrations import Rank1Client
from rank1_integrations.testing import FakeRank1Server, default_sigint

SCRIPT = textwrap.dedent("""
    import asyncio, gc
    from rank1_integrations import Rank1Client
    from rank1_integrations.testing import FakeRank1Server, default_sigint

    with FakeRank1Server() as server:
        client = Rank1Client(base_url=server.base_url, cache=None)

        async def main():
            return await client.arerank("moon tides", ["moon tides", "cats"])

        for _ in range(2):  # two loops, no aclose(): each loop's session must be closed
            assert [j.relevant for j in asyncio.run(main())] == [True, False]
        gc.collect()
    print("done")
""")


@pytest.mark.slow
def test_asyncio_run_without_aclose_leaves_no_open_session():
    result = subprocess.run(
        [sys.executable, "-W", "always::ResourceWarning", "-c", SCRIPT],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "done"
    assert "Unclosed" not in result.stderr, result.stderr


SYNC_SCRIPT = textwrap.dedent("""
    import gc, sys, threading
    from rank1_integrations import Rank1Client
    from rank1_integrations.testing import FakeRank1Server, default_sigint

    with FakeRank1Server() as server:
        client = Rank1Client(base_url=server.base_url, cache=None)
        assert [j.relevant for j in client.rerank("moon tides", ["moon tides", "cats"])] == [
            True, False]
        if sys.argv[1] == "collect":  # dropped without close(): collected, not at exit
            del client
            gc.collect()
            loops = [t for t in threading.enumerate() if t.name == "rank1-client-loop"]
            assert not loops, loops
    print("done")
""")


@pytest.mark.slow
@pytest.mark.parametrize("end", ["exit", "collect"])
def test_sync_rerank_without_close_leaves_no_open_session(end: str) -> None:
    """The sync API's background loop and its HTTP session are closed without close():
    at interpreter exit, or when the client is garbage-collected."""
    result = subprocess.run(
        [sys.executable, "-W", "always::ResourceWarning", "-c", SYNC_SCRIPT, end],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "done"
    assert "Unclosed" not in result.stderr, result.stderr
    assert "Exception ignored" not in result.stderr, result.stderr


INTERRUPT_SCRIPT = textwrap.dedent("""
    import sys, time
    from rank1_integrations import Rank1Client

    base_url, passages, settle = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    client = Rank1Client(base_url=base_url, cache=None, concurrency=2, max_retries=0)
    try:
        client.rerank("moon tides", ["moon tides %d" % i for i in range(passages)])
        print("finished")
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        time.sleep(settle)  # time enough for every request to reach the server, if sent
    print("done")
""")


@pytest.mark.slow
def test_ctrl_c_during_a_sync_rerank_cancels_its_requests() -> None:
    """SIGINT while rerank() waits on the background loop: the call's task is cancelled
    there, so the requests not yet sent never are (and the ones in flight are aborted)."""
    passages, delay = 10, 0.3  # 2 at a time: 1.5 s for all of them
    with FakeRank1Server(delay=delay) as server:
        proc = subprocess.Popen(
            [sys.executable, "-c", INTERRUPT_SCRIPT, server.base_url, str(passages),
             str(passages * delay)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=default_sigint,  # even when the suite runs as a background job
        )
        try:
            deadline = time.monotonic() + 60
            while server.requests == 0:  # the first request is in the server's hands
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "no request reached the server"
                time.sleep(0.01)
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        served = server.requests
    assert out.split() == ["interrupted", "done"], err
    assert served <= 4 < passages, f"{served} of {passages} requests reached the server"
    assert "Unclosed" not in err, err


async def test_injected_async_client_on_one_loop_then_sync_api_fails_clearly() -> None:
    """An injected async client is bound to the loop it first ran on: arerank there works;
    the sync API (its own background loop) gets an error that says so, no request made."""
    with FakeRank1Server() as server:
        sdk = openai.AsyncOpenAI(
            base_url=server.base_url, api_key="k", http_client=openai.DefaultAioHttpClient()
        )
        client = Rank1Client(client=sdk, cache=None, max_retries=0)
        try:
            for _ in range(2):  # the common case: one loop, many calls
                judgments = await client.arerank("moon tides", ["moon tides"])
                assert [j.relevant for j in judgments] == [True]
            before = server.requests
            with pytest.raises(RuntimeError, match="injected async client") as caught:
                client.rerank("moon tides", ["moon tides"])
            assert "background loop" in str(caught.value)
            assert "openai.OpenAI" in str(caught.value)  # the way out
            assert server.requests == before
        finally:
            client.close()
            await sdk.close()


def test_injected_async_client_on_a_second_loop_fails_clearly() -> None:
    """Two asyncio.run calls with one injected httpx.AsyncClient: the second loop gets a
    RuntimeError naming the cause, not the HTTP library's error from deep inside."""
    with FakeRank1Server() as server:
        http = httpx.AsyncClient()
        client = Rank1Client(server.base_url, client=http, cache=None, max_retries=0)
        assert asyncio.run(client.ajudge("moon tides", "moon tides")).relevant
        with pytest.raises(RuntimeError, match="injected async client .*httpx.AsyncClient"):
            asyncio.run(client.ajudge("moon tides", "moon tides"))
        client.close()


def test_injected_sync_client_works_from_any_loop() -> None:
    """A sync SDK client is not bound to a loop: asyncio.run twice and the sync API."""
    with FakeRank1Server() as server:
        with openai.OpenAI(base_url=server.base_url, api_key="k") as sdk:
            with Rank1Client(client=sdk, cache=None) as client:
                for _ in range(2):
                    assert asyncio.run(client.ajudge("moon tides", "moon tides")).relevant
                assert client.judge("moon tides", "moon tides").relevant
