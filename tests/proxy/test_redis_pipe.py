"""The pipelined RESP client of the hot path: parsing from partial buffers, and a real Redis."""

import asyncio

import pytest

from proxy.redis_pipe import _INCOMPLETE, RedisPipe, RedisReplyError, encode_command, parse_reply


def test_encoding_is_resp_arrays_of_bulk_strings():
    assert encode_command([b"GET", "key", 5]) == b"*3\r\n$3\r\nGET\r\n$3\r\nkey\r\n$1\r\n5\r\n"


@pytest.mark.parametrize(
    "raw,expected",
    [
        (b":42\r\n", 42),
        (b"+OK\r\n", b"OK"),
        (b"$5\r\nhello\r\n", b"hello"),
        (b"$-1\r\n", None),
        (b"*3\r\n:1\r\n:0\r\n$2\r\nhi\r\n", [1, 0, b"hi"]),
        (b"*2\r\n*1\r\n:7\r\n$0\r\n\r\n", [[7], b""]),
    ],
)
def test_replies_parse_whole_and_not_before_they_are_complete(raw, expected):
    assert parse_reply(raw, 0) == (expected, len(raw))
    for cut in range(1, len(raw)):
        assert parse_reply(raw[:cut], 0)[0] is _INCOMPLETE


def test_errors_become_reply_errors():
    reply, _ = parse_reply(b"-NOSCRIPT No matching script\r\n", 0)
    assert isinstance(reply, RedisReplyError) and str(reply).startswith("NOSCRIPT")


async def test_concurrent_calls_share_one_connection_and_match_replies(redis_url):
    pipe = RedisPipe(redis_url)
    try:
        await pipe.call(b"DEL", "gwtest:pipe")
        replies = await asyncio.gather(*(pipe.call(b"INCR", "gwtest:pipe") for _ in range(200)))
        assert sorted(replies) == list(range(1, 201))
        big = b"x" * 200_000  # a reply split over many reads
        await pipe.call(b"SET", "gwtest:pipe:big", big)
        assert await pipe.call(b"GET", "gwtest:pipe:big") == big
        with pytest.raises(RedisReplyError):
            await pipe.call(b"NOSUCHCOMMAND")
        assert await pipe.call(b"PING") == b"PONG"  # the connection survives a reply error
    finally:
        await pipe.call(b"DEL", "gwtest:pipe", "gwtest:pipe:big")
        await pipe.close()


async def test_an_unreachable_redis_fails_fast():
    from tests.live import free_port

    pipe = RedisPipe(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)
    with pytest.raises((OSError, TimeoutError)):
        await pipe.call(b"PING")
