"""Template rendering: shipped defaults, formats, errors, the sandbox, escaping and caching."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, date, datetime

import pytest

from hub.messaging import rendering
from hub.messaging.rendering import (
    DEFAULT_TEMPLATE_NAMES,
    InvalidValue,
    MissingVariable,
    RenderedMessage,
    TemplateError,
    TemplateNotFound,
    TemplateSource,
    TemplateSyntax,
    UndeclaredVariable,
    UnsafeTemplate,
    default_template,
    render,
    sample_data,
    validate_template,
)

LOCALES = ("pt-BR", "en")
CHANNELS = ("sms", "whatsapp", "email")
# Emoji and pictographs (including ⚠ and ✅ from the BMP's symbol blocks).
EMOJI = re.compile("[\u2600-\u27bf\U0001f300-\U0001faff]")


def create_source(
    body: str, *, channel: str = "sms", required: list[str] | None = None, **parts: str
) -> TemplateSource:
    return TemplateSource(
        name="test",
        locale=parts.pop("locale", "pt-BR"),
        channel=channel,  # type: ignore[arg-type]
        body=body,
        required=required if required is not None else [],
        **parts,
    )


def render_text(body: str, data: dict | None = None, **options: str) -> str:
    return render(create_source(body), data or {}, channel="sms", **options).body


class TestDefaultTemplates:
    @pytest.mark.parametrize(
        ("name", "locale", "channel"), list(itertools.product(DEFAULT_TEMPLATE_NAMES, LOCALES, CHANNELS))
    )
    def test_renders_with_its_sample_data(self, name: str, locale: str, channel: str) -> None:
        source = default_template(name, locale, channel)  # type: ignore[arg-type]
        assert (source.name, source.locale, source.channel) == (name, locale, channel)
        validate_template(source)
        message = render(source, sample_data(name), channel=source.channel)

        assert message.channel == channel
        assert "customer_name" in source.required
        # The variables that are plain text must reach every channel as given.
        assert sample_data(name)["customer_name"] in message.body
        for text in (message.body, message.subject or "", message.html or ""):
            assert "{{" not in text and "{%" not in text and "None" not in text
        greeting = "Olá" if locale == "pt-BR" else "Hi"
        assert greeting in message.body
        if channel == "sms":
            assert message.segments is not None and message.segments.segments <= 3
            assert message.subject is None and message.html is None
        elif channel == "whatsapp":
            assert re.search(r"\*[^*\n]+\*", message.body), "bold"
            assert re.search(r"_[^_\n]+_", message.body), "italic"
            assert EMOJI.search(message.body), "emoji"
        else:
            assert message.subject and "\n" not in message.subject
            assert message.html is not None and message.html.startswith("<!DOCTYPE html>")
            assert f'lang="{locale}"' in message.html
            # Every sample business name has an "&": escaped in HTML only.
            business = sample_data(name)["business_name"]
            assert "&" in business
            assert business.replace("&", "&amp;") in message.html
            assert business in message.body and business not in message.html

    def test_pt_br_sms_exactly(self) -> None:
        message = render(default_template("order-created", "pt-BR", "sms"), sample_data("order-created"), channel="sms")
        assert message.body == (
            "Souza & Filhos: Olá, Maria José Araújo! Recebemos seu pedido nº 2025-0173, "
            "no valor de R$ 1.234,56. Acompanhe: https://exemplo.com.br/p/2025-0173"
        )

    def test_en_email_formats_money_and_times_in_english(self) -> None:
        message = render(
            default_template("payment-received", "en", "email"), sample_data("payment-received"), channel="email"
        )
        assert message.subject == "Payment received: invoice NF-8841"
        assert "R$459.90" in message.body
        assert "Mar 26, 2025, 10:05 AM" in message.body  # 13:05 UTC in São Paulo

    @pytest.mark.parametrize(
        ("requested", "chosen"),
        [("pt-BR", "pt-BR"), ("en", "en"), ("en-US", "en"), ("EN_gb", "en"), ("pt", "pt-BR"), ("pt-PT", "pt-BR"),
         ("es", "pt-BR"), ("", "pt-BR")],
    )  # fmt: skip
    def test_locale_fallback(self, requested: str, chosen: str) -> None:
        assert default_template("welcome", requested, "sms").locale == chosen

    def test_unknown_name(self) -> None:
        with pytest.raises(TemplateNotFound, match="no default template 'order-lost'"):
            default_template("order-lost", "pt-BR", "sms")

    def test_unknown_channel(self) -> None:
        with pytest.raises(ValueError, match="unknown channel"):
            default_template("welcome", "pt-BR", "fax")  # type: ignore[arg-type]

    def test_sample_data_is_a_copy(self) -> None:
        sample_data("welcome")["customer_name"] = "changed"
        assert sample_data("welcome")["customer_name"] != "changed"


class TestMoney:
    @pytest.mark.parametrize(
        ("cents", "currency", "pt_br", "en"),
        [
            (123456, "BRL", "R$ 1.234,56", "R$1,234.56"),
            (5, "BRL", "R$ 0,05", "R$0.05"),
            (0, "BRL", "R$ 0,00", "R$0.00"),
            (-123456, "BRL", "-R$ 1.234,56", "-R$1,234.56"),
            (123456789012, "BRL", "R$ 1.234.567.890,12", "R$1,234,567,890.12"),
            (123456, "USD", "US$ 1.234,56", "$1,234.56"),
            (123456, "EUR", "€ 1.234,56", "€1,234.56"),
            (123456, "ARS", "ARS 1.234,56", "ARS 1,234.56"),
        ],
    )
    def test_formats(self, cents: int, currency: str, pt_br: str, en: str) -> None:
        body = "{{ amount|money(currency) }}"
        assert render_text(body, {"amount": cents, "currency": currency}) == pt_br
        assert render_text(body, {"amount": cents, "currency": currency}, locale="en") == en

    @pytest.mark.parametrize("amount", [12.5, "1234", True, None])
    def test_only_integer_cents(self, amount: object) -> None:
        with pytest.raises(InvalidValue, match="integer cents"):
            render_text("{{ amount|money }}", {"amount": amount})

    def test_currency_code_is_checked(self) -> None:
        with pytest.raises(InvalidValue, match="ISO 4217"):
            render_text("{{ 100|money('real') }}")


class TestDates:
    moment = datetime(2025, 3, 25, 17, 30, tzinfo=UTC)

    def test_pt_br_in_sao_paulo(self) -> None:
        data = {"when": self.moment}
        assert render_text("{{ when|datetime }}", data) == "25/03/2025 14:30"
        assert render_text("{{ when|date }} às {{ when|time }}", data) == "25/03/2025 às 14:30"

    def test_en(self) -> None:
        assert render_text("{{ when|datetime }}", {"when": self.moment}, locale="en") == "Mar 25, 2025, 2:30 PM"
        assert render_text("{{ when|time }}", {"when": "2025-03-25T03:05:00Z"}, locale="en") == "12:05 AM"

    def test_other_time_zone(self) -> None:
        assert render_text("{{ when|time }}", {"when": self.moment}, timezone="America/Manaus") == "13:30"

    def test_the_day_is_the_recipients_day(self) -> None:
        late_evening = datetime(2025, 3, 26, 2, 0, tzinfo=UTC)  # 23:00 on the 25th in São Paulo
        assert render_text("{{ when|date }}", {"when": late_evening}) == "25/03/2025"

    def test_iso_text_and_naive_datetimes_are_utc(self) -> None:
        assert render_text("{{ when|time }}", {"when": "2025-03-25T17:30:00Z"}) == "14:30"
        assert render_text("{{ when|time }}", {"when": datetime(2025, 3, 25, 17, 30)}) == "14:30"

    def test_plain_dates_are_not_shifted(self) -> None:
        assert render_text("{{ due|date }}", {"due": date(2025, 3, 20)}) == "20/03/2025"
        assert render_text("{{ due|date }}", {"due": "2025-03-20"}, locale="en") == "Mar 20, 2025"

    def test_a_date_has_no_time(self) -> None:
        with pytest.raises(InvalidValue, match="without a time of day"):
            render_text("{{ due|datetime }}", {"due": "2025-03-20"})

    def test_not_a_date(self) -> None:
        with pytest.raises(InvalidValue, match="ISO-8601"):
            render_text("{{ due|date }}", {"due": "amanhã"})

    def test_unknown_time_zone(self) -> None:
        with pytest.raises(ValueError, match="unknown time zone"):
            render_text("{{ 1 }}", timezone="America/Atlantis")


class TestMissingVariables:
    def test_required_variable_missing_is_named(self) -> None:
        source = default_template("order-created", "pt-BR", "sms")
        data = sample_data("order-created")
        del data["order_number"]
        with pytest.raises(MissingVariable, match="'order_number'") as caught:
            render(source, data, channel="sms")
        assert caught.value.variable == "order_number"

    def test_none_counts_as_missing(self) -> None:
        source = create_source("Olá, {{ customer_name }}", required=["customer_name"])
        with pytest.raises(MissingVariable) as caught:
            render(source, {"customer_name": None}, channel="sms")
        assert caught.value.variables == ("customer_name",)

    def test_undeclared_variable_missing_at_render_is_named(self) -> None:
        with pytest.raises(MissingVariable) as caught:
            render_text("{{ order_number }}", {"customer_name": "Ana"})
        assert caught.value.variable == "order_number"

    def test_missing_key_of_a_nested_value_is_named(self) -> None:
        with pytest.raises(MissingVariable) as caught:
            render_text("{{ order.total }}", {"order": {"number": "1"}})
        assert caught.value.variable == "total"

    def test_mapping_methods_are_not_reachable_as_keys(self) -> None:
        with pytest.raises(MissingVariable) as caught:
            render_text("{{ order.items }}", {"order": {"number": "1"}})
        assert caught.value.variable == "items"
        assert render_text("{{ order.items }}", {"order": {"items": "3 itens"}}) == "3 itens"

    def test_methods_of_values_are_not_reachable(self) -> None:
        with pytest.raises(MissingVariable) as caught:
            render_text("{{ name.upper }}", {"name": "ana"})
        assert caught.value.variable == "upper"
        with pytest.raises(MissingVariable):
            render_text("{{ items['append'] }}", {"items": ["a"]})
        assert (
            render_text("{{ items[1] }}{{ name[0] }}{{ items[:1]|join }}", {"items": ["a", "b"], "name": "ana"})
            == "baa"
        )

    def test_optional_variables_can_be_guarded(self) -> None:
        body = "Olá{% if nickname is defined %}, {{ nickname }}{% endif %}!"
        assert render_text(body) == "Olá!"
        assert render_text(body, {"nickname": "Zé"}) == "Olá, Zé!"

    def test_optional_variables_can_have_defaults(self) -> None:
        body = "Olá, {{ nickname|default('cliente') }}! {{ order.note|d('') }}"
        assert render_text(body, {"order": {}}) == "Olá, cliente!"
        assert render_text(body, {"nickname": "Zé", "order": {"note": "Obrigado."}}) == "Olá, Zé! Obrigado."


class TestValidateTemplate:
    def test_typo_is_an_undeclared_variable(self) -> None:
        source = create_source("Olá, {{ custmer_name }}", required=["customer_name"])
        with pytest.raises(UndeclaredVariable, match="'custmer_name'"):
            validate_template(source)

    def test_optional_variables_are_declared_by_the_caller(self) -> None:
        source = create_source("Olá{% if nickname is defined %}, {{ nickname }}{% endif %}")
        validate_template(source, optional=["nickname"])
        with pytest.raises(UndeclaredVariable):
            validate_template(source)

    def test_loop_and_set_names_are_not_variables(self) -> None:
        source = create_source(
            "{% set total = items|length %}{% for item in items %}{{ loop.index }}. {{ item }} {% endfor %}{{ total }}",
            required=["items"],
        )
        validate_template(source)
        assert render(source, {"items": ["a", "b"]}, channel="sms").body == "1. a 2. b 2"

    def test_syntax_error_names_part_and_line(self) -> None:
        source = create_source("ok", channel="email", subject="Pedido", html="<p>\n{{ customer_name }}\n{% if %}</p>")
        with pytest.raises(TemplateSyntax, match=r"html, line 3") as caught:
            validate_template(source)
        assert (caught.value.part, caught.value.line) == ("html", 3)

    def test_unknown_filter_is_a_syntax_error(self) -> None:
        with pytest.raises(TemplateSyntax, match="no filter named 'mony'"):
            validate_template(create_source("{{ 1|mony }}"))

    def test_email_needs_subject_and_html(self) -> None:
        with pytest.raises(TemplateError, match="subject and html are required"):
            validate_template(create_source("texto", channel="email", subject="Assunto"))

    def test_sms_has_no_subject(self) -> None:
        with pytest.raises(TemplateError, match="only e-mail has a subject"):
            validate_template(create_source("texto", subject="Assunto"))

    def test_required_names_must_be_identifiers(self) -> None:
        with pytest.raises(TemplateError, match="not a valid variable name"):
            validate_template(create_source("texto", required=["customer-name"]))

    def test_empty_body(self) -> None:
        with pytest.raises(TemplateError, match="body is empty"):
            validate_template(create_source(""))


# Each refused at save time (validate_template) and again at render time.
STATICALLY_UNSAFE = [
    "{{ ''.__class__.__mro__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ self.__init__.__globals__ }}",
    "{{ customer_name['__class__'] }}",
    "{{ customer_name|attr('__class__') }}",
    "{{ customer_name.format(x=1) }}",
    "{{ customer_name.ljust(1000000000) }}",
    "{{ '{0.__class__}'.format(customer_name) }}",
    "{% include 'welcome.json' %}",
    "{% import 'x' as y %}",
    "{% extends 'base' %}",
    "{% macro boom() %}{{ boom() }}{% endmacro %}{{ boom() }}",
    "{% for a in customer_name %}{% for b in customer_name %}{% endfor %}{% endfor %}",
    "{% set captured %}{{ customer_name }}{% endset %}",
    "{% filter upper %}{{ customer_name }}{% endfilter %}",
    "{% autoescape false %}{{ customer_name }}{% endautoescape %}",
]
# Refused when they run: what they would cost depends on values.
UNSAFE_AT_RUNTIME = [
    "{{ 'x' * 1000000000 }}",
    "{{ (10 ** 60) ** 100 }}",
    "{{ '%999999999s' % customer_name }}",
    "{% set a = 'x' * 200000 %}{% set a = a ~ a %}{{ a|length }}",
    "{% set a = 'x' * 200000 %}{{ (a + a)|length }}",
    "{{ ('x' * 200000)|replace('x', 'yy') }}",
    "{{ ('x' * 1000)|join('y' * 1000) }}",
    "{% for i in 'x' * 200000 %}{{ customer_name }}{% endfor %}",
]


class TestSandbox:
    @pytest.mark.parametrize("body", STATICALLY_UNSAFE)
    def test_refused_at_save_and_at_render(self, body: str) -> None:
        source = create_source(body, required=["customer_name"])
        with pytest.raises(UnsafeTemplate):
            validate_template(source)
        with pytest.raises(UnsafeTemplate):
            render(source, {"customer_name": "Ana"}, channel="sms")

    @pytest.mark.parametrize("body", UNSAFE_AT_RUNTIME)
    def test_refused_at_render(self, body: str) -> None:
        with pytest.raises(UnsafeTemplate):
            render(create_source(body, required=["customer_name"]), {"customer_name": "Ana"}, channel="sms")

    def test_no_globals(self) -> None:
        for name in ("range", "lipsum", "cycler", "joiner", "namespace", "dict"):
            with pytest.raises(MissingVariable, match=name):
                render_text(f"{{{{ {name} }}}}")

    def test_objects_in_data_are_refused(self) -> None:
        class Customer:
            name = "Ana"

        with pytest.raises(InvalidValue, match=r"data\.customer is a Customer"):
            render_text("{{ customer.name }}", {"customer": Customer()})
        with pytest.raises(InvalidValue, match=r"data\.order\.lines\[1\] is a Customer"):
            render_text("{{ 1 }}", {"order": {"lines": ["ok", Customer()]}})

    def test_private_data_keys_are_refused(self) -> None:
        with pytest.raises(InvalidValue, match="'_token'"):
            render_text("{{ 1 }}", {"_token": "secret"})

    def test_ordinary_expressions_still_work(self) -> None:
        data = {"customer_name": "ana", "items": ["a", "b"], "n": 3}
        body = "{{ customer_name|title }} {{ items|join(', ') }} {{ n * 2 + 1 }} {{ 'ab' ~ n }} {{ '-' * 3 }}"
        assert render_text(body, data) == "Ana a, b 7 ab3 ---"

    def test_errors_inside_expressions_are_invalid_values(self) -> None:
        with pytest.raises(InvalidValue, match="division by zero"):
            render_text("{{ n / 0 }}", {"n": 1})


class TestEscaping:
    data = {"customer_name": "<b>Ana</b> & Cia", "order_number": "7"}

    def email(self) -> RenderedMessage:
        source = create_source(
            "Olá, {{ customer_name }}",
            channel="email",
            subject="Pedido {{ order_number }} de {{ customer_name }}",
            html="<p>Olá, {{ customer_name }}</p>{{ '<i>' ~ customer_name }}",
            required=["customer_name", "order_number"],
        )
        return render(source, self.data, channel="email")

    def test_html_part_escapes_data(self) -> None:
        html = self.email().html
        assert html == "<p>Olá, &lt;b&gt;Ana&lt;/b&gt; &amp; Cia</p>&lt;i&gt;&lt;b&gt;Ana&lt;/b&gt; &amp; Cia"

    def test_text_parts_do_not(self) -> None:
        message = self.email()
        assert message.body == "Olá, <b>Ana</b> & Cia"
        assert message.subject == "Pedido 7 de <b>Ana</b> & Cia"
        assert render_text("{{ customer_name }}", self.data) == "<b>Ana</b> & Cia"
        whatsapp = render(create_source("*{{ customer_name }}*", channel="whatsapp"), self.data, channel="whatsapp")
        assert whatsapp.body == "*<b>Ana</b> & Cia*"

    def test_subject_is_one_line(self) -> None:
        source = create_source("x", channel="email", subject="Pedido {{ n }}", html="<p>x</p>")
        message = render(source, {"n": "1\r\nBcc: victim@example.com"}, channel="email")
        assert message.subject == "Pedido 1 Bcc: victim@example.com"


class TestRender:
    def test_channel_must_match_the_template(self) -> None:
        with pytest.raises(ValueError, match="is for sms, not email"):
            render(create_source("oi"), {}, channel="email")

    def test_sms_carries_its_segment_count(self) -> None:
        message = render(create_source("Olá, {{ n }}!"), {"n": "Ana"}, channel="sms")
        assert message.segments is not None
        assert (message.segments.encoding, message.segments.units) == ("UCS-2", 9)

    def test_surrounding_whitespace_is_trimmed(self) -> None:
        assert render_text("\n  {% if true %}\n  Olá\n{% endif %}\n") == "Olá"

    def test_empty_result_is_an_error(self) -> None:
        with pytest.raises(TemplateError, match="empty body"):
            render_text("{% if false %}x{% endif %}")

    def test_compiled_templates_are_reused(self) -> None:
        rendering._compile.cache_clear()
        source = default_template("welcome", "pt-BR", "email")
        for index in range(50):
            render(source, {"customer_name": f"Cliente {index}", "business_name": "Loja"}, channel="email")
        info = rendering._compile.cache_info()
        assert info.misses == 3  # subject, text and html, compiled once each
        assert info.hits == 147
