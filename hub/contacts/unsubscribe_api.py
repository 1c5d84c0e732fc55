"""``/unsubscribe/{token}``: the one-click unsubscribe of e-mail (see unsubscribe.py).

Public (the recipient has no account); the sealed token is the authorization."""

from __future__ import annotations

import html
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from hub.contacts.consent import unsubscribe_from_email
from hub.contacts.unsubscribe import ONE_CLICK, UnsubscribeTokens
from hub.db import transaction

router = APIRouter(tags=["unsubscribe"])

# the page posts its own form back to the hub, and nothing else
PAGE_HEADERS = {"Cache-Control": "no-store", "Content-Security-Policy":
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; "
                "base-uri 'none'"}


def _page(title: str, text: str, *, form: bool = False, status: int = 200) -> HTMLResponse:
    button = ('<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
              '<button type="submit">Cancelar inscrição</button></form>') if form else ""
    body = (f'<!doctype html><html lang="pt-BR"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'</head><body style="font-family:sans-serif;max-width:32em;margin:3em auto">'
            f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>{button}</body></html>")
    return HTMLResponse(body, status_code=status, headers=PAGE_HEADERS)


def _tokens(request: Request) -> UnsubscribeTokens:
    return request.app.state.runtime.unsubscribe_tokens


_UNKNOWN = ("Link inválido", "Este link de cancelamento não é válido. Use o link do e-mail que você recebeu.")


@router.get(
    "/unsubscribe/{token}", response_class=HTMLResponse, include_in_schema=False,
)
def unsubscribe_page(token: str, request: Request) -> HTMLResponse:
    """A page with the unsubscribe button: a GET changes nothing (link scanners follow links)."""
    recipient = _tokens(request).read(token)
    if recipient is None:
        return _page(*_UNKNOWN, status=404)
    return _page("Cancelar o recebimento de e-mails",
                 f"Deixar de receber e-mails enviados para {recipient.address}?", form=True)


@router.post("/unsubscribe/{token}", response_class=HTMLResponse, include_in_schema=False)
async def unsubscribe(token: str, request: Request) -> HTMLResponse:
    """RFC 8058: ``List-Unsubscribe=One-Click`` in the body opts the recipient out of e-mail."""
    recipient = _tokens(request).read(token)
    if recipient is None:
        return _page(*_UNKNOWN, status=404)
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    if "One-Click" not in form.get("List-Unsubscribe", []):
        return _page("Pedido incompleto", f"O pedido precisa de {ONE_CLICK}.", status=400)
    runtime = request.app.state.runtime
    with transaction(runtime.session_factory) as session:
        unsubscribe_from_email(session=session, tenant_id=recipient.tenant_id, address=recipient.address)
    return _page("Pronto", f"{recipient.address} não receberá mais e-mails deste remetente.")
