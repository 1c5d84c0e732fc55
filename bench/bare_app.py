"""The baseline of bench/ingest.py: a bare FastAPI route that only parses the same form."""

from fastapi import FastAPI, Request
from fastapi.responses import Response

app = FastAPI()


@app.post("/webhooks/twilio/messaging")
async def messaging(request: Request) -> Response:
    form = await request.form()
    return Response(f"<Response/><!-- {len(form)} -->", media_type="application/xml")
