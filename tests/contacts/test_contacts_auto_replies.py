"""Auto-replies through the real webhook handler path, with the clock given by each
message's receipt time (no sleeping): keyword rules once per conversation per rule per
24 h, the after-hours reply once per closed period, holidays, opt-out precedence; and
the rules' and business hours' API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hub.contacts import service
from hub.contacts.schemas import AutoReplyCreate, BusinessHoursWrite
from tests.contacts.inbound_support import CUSTOMER, clinic, inbound, replies
from tests.support import tenant_headers

# 2026-11-23 is a Monday; the tenant is in America/Sao_Paulo (UTC-3, no DST)
MONDAY_10H = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)
WEEKDAYS_8_TO_18 = {day: [["08:00", "12:00"], ["13:00", "18:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}
AFTER_HOURS = "Estamos fechados agora; respondemos a partir das 8h."


def add_rule(runtime, tenant_id, keywords, reply, channel=None):
    with runtime.session_factory() as session, session.begin():
        return service.create_auto_reply(session=session, tenant_id=tenant_id, rule_in=AutoReplyCreate(
            keywords=keywords, reply=reply, channel=channel)).id


def set_hours(runtime, tenant_id, *, holidays=(), reply=AFTER_HOURS, schedule=None):
    with runtime.session_factory() as session, session.begin():
        service.put_business_hours(session=session, tenant_id=tenant_id, hours_in=BusinessHoursWrite(
            schedule=WEEKDAYS_8_TO_18 if schedule is None else schedule, holidays=list(holidays),
            after_hours_reply=reply))


def bodies(runtime, tenant_id) -> list[str]:
    return [m.body for m in replies(runtime, tenant_id)]


class TestKeywordRules:
    def test_once_per_conversation_per_rule_per_24_hours(self, runtime):
        tenant = clinic(runtime)
        add_rule(runtime, tenant.tenant_id, ["preço", "quanto custa"], "A consulta custa R$ 200.")
        add_rule(runtime, tenant.tenant_id, ["endereço"], "Rua das Flores, 10.")
        inbound(runtime, tenant, "Bom dia", at=MONDAY_10H)
        inbound(runtime, tenant, "Qual o PRECO?", at=MONDAY_10H + timedelta(minutes=1))
        inbound(runtime, tenant, "e o preço da volta?", at=MONDAY_10H + timedelta(hours=2))
        inbound(runtime, tenant, "Quanto custa, e o endereço?", at=MONDAY_10H + timedelta(hours=3))
        assert bodies(runtime, tenant.tenant_id) == ["A consulta custa R$ 200."]
        inbound(runtime, tenant, "qual o endereço", at=MONDAY_10H + timedelta(hours=4))
        inbound(runtime, tenant, "preço?", at=MONDAY_10H + timedelta(hours=24, minutes=2))
        assert bodies(runtime, tenant.tenant_id) == ["A consulta custa R$ 200.", "Rua das Flores, 10.",
                                                     "A consulta custa R$ 200."]
        # another contact is another conversation
        inbound(runtime, tenant, "preço", from_="+5521988887777", at=MONDAY_10H + timedelta(hours=25))
        assert len(replies(runtime, tenant.tenant_id)) == 4

    def test_a_rule_for_one_channel_and_whole_words_only(self, runtime):
        tenant = clinic(runtime)
        add_rule(runtime, tenant.tenant_id, ["pix"], "Chave PIX: 123", channel="whatsapp")
        inbound(runtime, tenant, "aceita pix?", at=MONDAY_10H)
        inbound(runtime, tenant, "pixel", channel="whatsapp", at=MONDAY_10H)
        assert replies(runtime, tenant.tenant_id) == []
        inbound(runtime, tenant, "Aceita PIX?", channel="whatsapp", at=MONDAY_10H)
        [reply] = replies(runtime, tenant.tenant_id)
        assert (reply.channel, reply.to_address, reply.body) == ("whatsapp", CUSTOMER, "Chave PIX: 123")


class TestAfterHours:
    def test_once_per_closed_period(self, runtime):
        tenant = clinic(runtime)
        set_hours(runtime, tenant.tenant_id)
        inbound(runtime, tenant, "oi", at=MONDAY_10H)  # open
        inbound(runtime, tenant, "oi", at=MONDAY_10H + timedelta(hours=2, minutes=30))  # lunch: 12:30
        inbound(runtime, tenant, "alô?", at=MONDAY_10H + timedelta(hours=2, minutes=45))  # same break
        assert bodies(runtime, tenant.tenant_id) == [AFTER_HOURS]
        inbound(runtime, tenant, "ainda aí?", at=MONDAY_10H + timedelta(hours=9))  # 19:00: a new closed period
        inbound(runtime, tenant, "?", at=MONDAY_10H + timedelta(hours=20))  # Tuesday 06:00, same night
        assert len(replies(runtime, tenant.tenant_id)) == 2
        friday_night = MONDAY_10H + timedelta(days=4, hours=10)
        inbound(runtime, tenant, "sexta à noite", at=friday_night)
        inbound(runtime, tenant, "sábado", at=friday_night + timedelta(hours=20))  # one weekend, one reply
        assert len(replies(runtime, tenant.tenant_id)) == 3

    def test_a_holiday_is_closed_all_day(self, runtime):
        tenant = clinic(runtime)
        set_hours(runtime, tenant.tenant_id, holidays=["2026-11-25"])
        wednesday_10h = MONDAY_10H + timedelta(days=2)
        inbound(runtime, tenant, "oi", at=wednesday_10h)
        inbound(runtime, tenant, "oi", at=wednesday_10h + timedelta(days=1))  # Thursday: open
        assert bodies(runtime, tenant.tenant_id) == [AFTER_HOURS]

    def test_a_keyword_rule_answers_before_the_after_hours_reply(self, runtime):
        tenant = clinic(runtime)
        set_hours(runtime, tenant.tenant_id)
        add_rule(runtime, tenant.tenant_id, ["horário"], "Abrimos das 8h às 18h.")
        inbound(runtime, tenant, "qual o horario?", at=MONDAY_10H + timedelta(hours=10))
        assert bodies(runtime, tenant.tenant_id) == ["Abrimos das 8h às 18h."]

    def test_opt_out_keywords_take_precedence_and_an_opted_out_contact_gets_no_auto_reply(self, runtime):
        tenant = clinic(runtime)
        set_hours(runtime, tenant.tenant_id)
        night = MONDAY_10H + timedelta(hours=10)
        inbound(runtime, tenant, "SAIR", at=night)
        inbound(runtime, tenant, "preciso de ajuda", at=night + timedelta(minutes=1))
        [confirmation] = replies(runtime, tenant.tenant_id)
        assert "VOLTAR" in confirmation.body

    def test_without_a_reply_text_or_disabled_nothing_is_sent(self, runtime):
        tenant = clinic(runtime)
        set_hours(runtime, tenant.tenant_id, reply=None)
        inbound(runtime, tenant, "oi", at=MONDAY_10H + timedelta(hours=10))
        assert replies(runtime, tenant.tenant_id) == []


class TestApi:
    def test_rules_crud_and_validation(self, client, runtime):
        _, headers = tenant_headers(client, runtime, "acme")
        _, other = tenant_headers(client, runtime, "other")
        created = client.post("/v1/auto-replies", headers=headers,
                              json={"keywords": ["preço", " valor "], "reply": "R$ 200", "channel": "sms"})
        assert created.status_code == 201, created.text
        rule = created.json()
        assert (rule["keywords"], rule["channel"], rule["enabled"]) == (["preço", "valor"], "sms", True)
        patched = client.patch(f"/v1/auto-replies/{rule['id']}", headers=headers,
                               json={"enabled": False, "channel": None})
        assert (patched.json()["enabled"], patched.json()["channel"]) == (False, None)
        assert [r["id"] for r in client.get("/v1/auto-replies", headers=headers).json()["data"]] == [rule["id"]]
        assert client.get("/v1/auto-replies", headers=other).json()["data"] == []
        for bad, code in (({"keywords": [], "reply": "x"}, "validation_error"),
                          ({"keywords": ["ok"], "reply": ""}, "validation_error"),
                          ({"keywords": ["SAIR"], "reply": "x"}, "reserved_keyword"),
                          ({"keywords": ["!!"], "reply": "x"}, "invalid_keyword"),
                          ({"keywords": ["ok"], "reply": "x", "channel": "fax"}, "validation_error")):
            r = client.post("/v1/auto-replies", headers=headers, json=bad)
            assert r.status_code == 422 and r.json()["error"]["code"] == code, (bad, r.text)
        assert client.patch(f"/v1/auto-replies/{rule['id']}", headers=headers,
                            json={"reply": None}).status_code == 422
        assert client.delete(f"/v1/auto-replies/{rule['id']}", headers=other).status_code == 404
        assert client.delete(f"/v1/auto-replies/{rule['id']}", headers=headers).status_code == 204
        assert client.get(f"/v1/auto-replies/{rule['id']}", headers=headers).status_code == 404

    def test_business_hours_put_get_and_validation(self, client, runtime):
        _, headers = tenant_headers(client, runtime, "acme")
        empty = client.get("/v1/business-hours", headers=headers).json()
        assert (empty["schedule"], empty["enabled"], empty["time_zone"]) == ({}, False, "America/Sao_Paulo")
        body = {"schedule": {"sat": [["09:00", "13:00"]], "mon": [["13:00", "18:00"], ["08:00", "12:00"]]},
                "holidays": ["2026-12-25"], "after_hours_reply": AFTER_HOURS}
        r = client.put("/v1/business-hours", headers=headers, json=body)
        assert r.status_code == 200, r.text
        assert r.json()["schedule"] == {"mon": [["08:00", "12:00"], ["13:00", "18:00"]], "sat": [["09:00", "13:00"]]}
        assert client.get("/v1/business-hours", headers=headers).json() == r.json()
        for schedule in ({"mon": [["18:00", "08:00"]]}, {"mon": [["8h", "18h"]]}, {"funday": [["08:00", "09:00"]]},
                         {"mon": [["08:00", "12:00"], ["11:00", "13:00"]]}):
            bad = client.put("/v1/business-hours", headers=headers, json={**body, "schedule": schedule})
            assert bad.status_code == 422, schedule
        assert client.get("/v1/business-hours", headers=headers).json() == r.json()
        _, reader = tenant_headers(client, runtime, "reader", scopes=["messages:read"])
        assert client.put("/v1/business-hours", headers=reader, json=body).status_code == 403


@pytest.mark.parametrize("local, expected", [("2026-11-23T07:59", False), ("2026-11-23T08:00", True),
                                             ("2026-11-23T17:59", True), ("2026-11-23T18:00", False),
                                             ("2026-11-28T10:00", False)])
def test_is_open(local, expected):
    from zoneinfo import ZoneInfo

    from hub.contacts.models import BusinessHours

    zone = ZoneInfo("America/Sao_Paulo")
    hours = BusinessHours(schedule=WEEKDAYS_8_TO_18, holidays=[])
    assert service.is_open(hours, zone, datetime.fromisoformat(local).replace(tzinfo=zone)) is expected
