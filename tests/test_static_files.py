"""Static files (admin, Swagger UI) are answered whole, not streamed from a sync iterator.

Under ASGI, Django can only stream a synchronous iterator by consuming it in a thread, and
warned "StreamingHttpResponse must consume synchronous iterators" on every admin page load
in `make run` (tests/test_devrun.py checks the console; these check the response).
"""

from pathlib import Path

import django.contrib.admin

STYLESHEET = "/static/admin/css/base.css"
SOURCE = Path(django.contrib.admin.__file__).parent / "static" / "admin" / "css" / "base.css"


def test_a_static_file_is_one_plain_response_with_its_headers(client):
    response = client.get(STYLESHEET)

    assert response.status_code == 200
    assert not response.streaming
    assert response.content == SOURCE.read_bytes()
    assert response["Content-Type"].startswith("text/css")
    assert int(response["Content-Length"]) == SOURCE.stat().st_size
    assert response["ETag"]


def test_ranges_head_and_revalidation_still_work(client):
    size = SOURCE.stat().st_size

    partial = client.get(STYLESHEET, HTTP_RANGE="bytes=0-9")
    head = client.head(STYLESHEET)
    again = client.get(STYLESHEET, HTTP_IF_NONE_MATCH=client.get(STYLESHEET)["ETag"])

    assert (partial.status_code, partial.content) == (206, SOURCE.read_bytes()[:10])
    assert partial["Content-Range"] == f"bytes 0-9/{size}"
    assert (head.status_code, head.content, int(head["Content-Length"])) == (200, b"", size)
    assert (again.status_code, again.content) == (304, b"")
