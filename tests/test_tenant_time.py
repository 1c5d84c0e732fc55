"""The one helper every route's times go through: never anything but a UTC time or a
422 naming the field, whatever the zone, the offset or the year."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.errors import Invalid
from hub.tenant_time import as_utc, schedule_time, zone_of

ZONES = ["America/Sao_Paulo", "America/Manaus", "America/Noronha", "America/New_York", "Europe/Lisbon",
         "Australia/Lord_Howe", "Pacific/Kiritimati", "Pacific/Pago_Pago", "Asia/Kathmandu", "UTC"]


class TestAsUtc:
    @settings(max_examples=300, deadline=None)
    @given(value=st.datetimes(), zone=st.sampled_from(ZONES))
    def test_a_naive_time_is_the_zones_wall_clock_or_a_422(self, value, zone):
        try:
            utc = as_utc(value, zone=zone, field="send_at")
        except Invalid as exc:
            assert exc.code in {"time_in_dst_gap", "time_out_of_range"} and exc.message.startswith("send_at:")
            return
        assert utc.tzinfo is UTC
        assert utc.astimezone(ZoneInfo(zone)).replace(tzinfo=None) == value.replace(fold=0)

    @settings(max_examples=300, deadline=None)
    @given(value=st.datetimes(), minutes=st.integers(-24 * 60 + 1, 24 * 60 - 1))
    def test_an_aware_time_is_the_same_instant_or_a_422(self, value, minutes):
        aware = value.replace(tzinfo=timezone(timedelta(minutes=minutes)))
        try:
            utc = as_utc(aware, field="since")
        except Invalid as exc:
            assert exc.code == "time_out_of_range"
            return
        assert utc == aware and utc.tzinfo is UTC

    def test_the_hour_lost_to_daylight_saving_is_refused_and_the_repeated_one_is_its_first(self):
        with pytest.raises(Invalid) as gap:
            as_utc(datetime(2026, 3, 8, 2, 30), zone="America/New_York", field="send_at")
        assert gap.value.code == "time_in_dst_gap"
        # 01:30 happens twice on 2026-11-01; the first is still daylight time (UTC-4)
        assert as_utc(datetime(2026, 11, 1, 1, 30), zone="America/New_York") == datetime(2026, 11, 1, 5, 30,
                                                                                            tzinfo=UTC)

    def test_an_unknown_stored_zone_reads_as_the_platform_default(self):
        assert zone_of("Mars/Olympus_Mons") == ZoneInfo("America/Sao_Paulo")


class TestScheduleTime:
    NOW = datetime(2026, 12, 6, 12, tzinfo=UTC)

    def test_past_and_too_far_are_422s_naming_the_field(self):
        for value, code in ((self.NOW - timedelta(seconds=1), "send_at_in_past"),
                            (self.NOW + timedelta(days=367), "send_at_too_far")):
            with pytest.raises(Invalid) as caught:
                schedule_time(value, zone=None, field="send_at", now=self.NOW, max_ahead=timedelta(days=366))
            assert caught.value.code == code

    def test_a_naive_time_is_read_in_the_tenants_zone(self):
        at = schedule_time(datetime(2026, 12, 7, 9), zone="America/Sao_Paulo", field="send_at", now=self.NOW,
                           max_ahead=timedelta(days=366))
        assert at == datetime(2026, 12, 7, 12, tzinfo=UTC)
