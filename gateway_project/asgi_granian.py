"""The ASGI application as granian serves it (`GATEWAY_SERVER=granian`): the gateway's one
application behind the body backstop that uvicorn's protocol gives it in `serve.py`."""

from gateway_project.asgi import application as gateway_application
from gateway_project.serve_granian import BodyDeadline

application = BodyDeadline(gateway_application)
