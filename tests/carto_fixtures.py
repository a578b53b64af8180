"""Fixtures for the CARTO tests: an emulator on loopback over this test's fresh database, with
the bikeways example loaded. Imported by tests/test_carto_*.py and tests/test_refresh*.py."""

from pathlib import Path

import pytest

from devtools.carto_emulator import CartoEmulator
from shared.core import db
from shared.refresh import carto
from shared.refresh.job import RefreshJob

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-test-master-9f3c2b7a41"  # distinctive, so a leak is easy to find
REGULAR_KEY = "sk-test-regular-5d1e8c0b"
TOKEN = "v3-token-0a9b8c7d6e"
FAST = carto.Timing(backoff_initial=0.01, backoff_max=0.05, poll_initial=0.05, poll_growth=1.5, poll_max=0.2,
                    v3_sync_margin=0.1)


def load_bikeways(database_url: str) -> None:
    con = db.connect(database_url)
    try:
        for name in ("schema.sql", "sample_data.sql"):
            con.run((ROOT / "examples" / "bikeways" / name).read_text())
    finally:
        con.close()


@pytest.fixture
def emulator(database_url):
    load_bikeways(database_url)
    emu = CartoEmulator(database_url, {"demo": KEY}, regular_keys={REGULAR_KEY: "demo"},
                        v3_tokens={TOKEN: "demo"}, statement_timeout_ms=300)
    emu.start()
    yield emu
    emu.stop()


def v2_job(url: str, **keys) -> RefreshJob:
    return RefreshJob(**{"name": "j", "api_key": KEY, "username": "demo", "sql_api_url": url, **keys})
