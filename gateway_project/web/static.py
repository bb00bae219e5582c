"""Static files (admin, API docs) served by WhiteNoise, answered whole rather than streamed.

WhiteNoise answers with a `FileResponse`, which streams a synchronous file iterator; under
ASGI Django can only consume that in a thread and warns "StreamingHttpResponse must consume
synchronous iterators" on every such response. The files here are the admin's and Swagger
UI's assets (the largest about 1.5 MB), so reading one into an ordinary response costs less
than the thread hops a streamed one would, and it serves WSGI and tests alike.
"""

from __future__ import annotations

from django.http import HttpResponse
from whitenoise.middleware import WhiteNoiseMiddleware

__all__ = ["StaticFilesMiddleware"]


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    """WhiteNoise's lookup, headers, compression and ranges; a plain, non-streaming body."""

    @staticmethod
    def serve(static_file, request) -> HttpResponse:
        answer = static_file.get_response(request.method, request.META)
        body = b""
        if answer.file is not None:  # None for HEAD and 304
            with answer.file as file:
                body = file.read()
        response = HttpResponse(body, status=int(answer.status))
        del response["Content-Type"]  # WhiteNoise's headers say what it is
        for name, value in answer.headers:
            response[name] = value
        return response
