"""The peers' hello-world apps, answering `GET /` like serverscope's models do."""

BODY = b"hello from serverscope\n"
HEADERS = [(b"content-type", b"text/plain"), (b"content-length", str(len(BODY)).encode())]


async def asgi_app(scope, receive, send):  # uvicorn
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


def wsgi_app(environ, start_response):  # gunicorn
    start_response("200 OK", [(k.decode(), v.decode()) for k, v in HEADERS])
    return [BODY]
