"""urlwatch's files as people bring them to `--adopt-urlwatch`: bounded YAML (aliases, nesting,
types), names made unique in linear time, adopted values kept as data (`${...}` stays literal),
clocks ahead of ours, and a dry run without --write that changes nothing."""

import re
import sqlite3
import tomllib
from datetime import datetime, timedelta, timezone

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functions import migrate as migrate_fn
from shared.app import config, urlwatch
from shared.core.errors import ConfigError


def write(tmp_path, text: str, name: str = "urls.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def laughs(levels: int) -> str:
    """A 'billion laughs' urls.yaml: each level an alias list of the one before, nine times."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 9) + "]" for n in range(1, levels)]
    return "url: https://example.org/\n" + "\n".join(lines) + "\n"


def test_a_job_whose_aliases_expand_past_the_bound_is_a_note_and_the_others_map(tmp_path, capsys):
    path = write(tmp_path, laughs(9) + "---\nurl: https://example.org/b\nname: b\n")  # 9**9 = 387 million values
    assert len(path.read_bytes()) < 1000
    assert migrate_fn.main(["--adopt-urlwatch", str(path)]) == 0
    out = capsys.readouterr().out
    assert [job["name"] for job in tomllib.loads(out)["scrape"]] == ["b"]
    assert ("# job #1: its YAML (aliases expanded) holds more than 100,000 values: not read, not written, its"
            " history not imported") in out.splitlines()


def test_a_file_whose_jobs_expand_past_the_bound_together_is_refused_in_one_line(tmp_path, capsys):
    path = write(tmp_path, "---\n".join(laughs(5) for _ in range(20)))  # 20 jobs of over 70,000 values each
    assert migrate_fn.main(["--adopt-urlwatch", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert re.fullmatch(rf"error: {re.escape(str(path))}: job #1[0-9]: the file's YAML \(aliases expanded\) holds"
                        r" more than 1,000,000 values: not read\n", captured.err), captured.err


def test_aliases_within_the_bound_are_read_as_yaml_reads_them(tmp_path):
    path = write(tmp_path, "url: &u https://example.org/a\nfilter: &f [html2text, strip]\n"
                           "user_visible_url: *u\nnotes: [*f, *f]\n")
    (job,) = urlwatch.read_jobs(path)
    assert job["user_visible_url"] == job["url"] and job["notes"] == [["html2text", "strip"]] * 2


@pytest.mark.parametrize("text", [
    "url: " + "[" * 60 + "]" * 60 + "\n",
    "url: https://example.org/\nname: &n [*n]\n",  # a recursive alias
    "".join(f"x{n}: &x{n} [*x{n - 1}]\n" if n else "x0: &x0 [1]\n" for n in range(60)) + "url: https://e.org/\n",
])
def test_a_job_nested_too_deep_is_a_note(tmp_path, text):
    (refused,) = urlwatch.read_jobs(write(tmp_path, text))
    (job,) = urlwatch.map_jobs([refused])
    assert job.table is None
    assert job.notes == ["job #1: nested more than 50 levels deep: not read, not written, its history not imported"]


@pytest.mark.parametrize("text, says", [
    ("url: " + "[" * 3000 + "]" * 3000 + "\n", "nested too deeply"),
    ("url: [unclosed\n", "not valid YAML"),
    ("- just\n- a list\n", "job #1 is not a mapping of keys"),
    ("? [a, b]\n: x\n", "not valid YAML"),  # a key YAML cannot hash
])
def test_nesting_recursion_and_malformed_files_are_one_line(tmp_path, capsys, text, says):
    path = write(tmp_path, text)
    assert migrate_fn.main(["--adopt-urlwatch", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: ") and says in err and err.count("\n") == 1, err


def test_a_file_too_large_is_refused_unread(tmp_path, monkeypatch):
    monkeypatch.setattr(urlwatch, "MAX_FILE_BYTES", 1000)
    path = write(tmp_path, "url: https://example.org/\nname: " + "x" * 2000 + "\n")
    with pytest.raises(ConfigError, match="larger than"):
        urlwatch.read_jobs(path)


def test_values_of_the_wrong_type_skip_that_job_with_one_line_and_the_others_map():
    jobs = urlwatch.map_jobs([
        {"url": "https://example.org/a", "kind": ["url"]},
        {"url": "https://example.org/b", "user_visible_url": {"x": 1}},
        {"url": "https://example.org/c", "name": ["a", "list"]},
        {"url": "https://example.org/d", "name": "fine"},
    ])
    assert [job.table is None for job in jobs] == [True, True, True, False]
    assert jobs[0].notes == ['job #1: kind: not text (["url"]): not written, its history not imported']
    assert "user_visible_url: not text" in jobs[1].notes[0] and "name: not text" in jobs[2].notes[0]
    assert jobs[3].table == {"name": "fine", "url": "https://example.org/d"}


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20)
job_keys = st.sampled_from(["url", "name", "kind", "filter", "user_visible_url", "max_tries", "timeout",
                            "ignore_cached", "command", "navigate", "headers", "cookies", "method", "data"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.dictionaries(job_keys, yaml_values | st.just("https://example.org/x"), max_size=8),
                min_size=1, max_size=5))
def test_any_job_documents_map_or_are_refused_with_a_config_error_never_another_exception(tmp_path_factory, docs):
    path = tmp_path_factory.mktemp("urls") / "urls.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    try:
        jobs = urlwatch.map_jobs(urlwatch.read_jobs(path))
    except ConfigError as exc:
        assert "\n" not in str(exc)
        return
    tables = [job.table for job in jobs if job.table is not None]
    names = [table["name"] for table in tables]
    assert len(names) == len(set(names))
    written = urlwatch.toml(jobs, ["a comment"])
    assert tomllib.loads(written).get("scrape", []) == tables


def test_ten_thousand_jobs_of_one_name_get_distinct_names_in_order():
    docs = [{"url": f"https://example.org/{n}", "name": "agenda"} for n in range(10_000)]
    names = [job.name for job in urlwatch.map_jobs(docs, taken={"agenda-3": "https://elsewhere.example/"})]
    assert names[:4] == ["agenda", "agenda-2", "agenda-4", "agenda-5"]  # -3 is another URL's
    assert len(set(names)) == 10_000 and names[-1] == "agenda-10001"


def test_a_variable_reference_in_an_adopted_value_stays_literal_text(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_PASSWORD", "hunter2-secret")
    (job,) = urlwatch.map_jobs([{"url": "https://example.org/?q=${DATABASE_PASSWORD}", "name": "q",
                                 "filter": [{"css": "a[title='${DATABASE_PASSWORD}']"}]}])
    assert job.table["url"] == "https://example.org/?q=$${DATABASE_PASSWORD}"
    jobs_file = write(tmp_path, urlwatch.toml([job], []), "jobs.toml")
    monkeypatch.setenv("JOBS_FILE", str(jobs_file))
    monkeypatch.delenv("JOBS_TOML", raising=False)
    (entry,) = [e for e in config.entries() if e.kind == "scrape"]
    built = config.build(entry)
    assert built.url == "https://example.org/?q=${DATABASE_PASSWORD}"  # the text, not the secret
    assert built.select == ("a[title='${DATABASE_PASSWORD}']",)


def test_a_password_in_an_adopted_url_with_a_literal_reference_keeps_both():
    (job,) = urlwatch.map_jobs([{"url": "https://me:pw123456@example.org/${X}", "name": "p"}])
    assert job.table["url"] == "https://me:${P_PASSWORD}@example.org/$${X}"


def cache_file(tmp_path, rows) -> str:
    path = tmp_path / "cache.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE CacheEntry (id INTEGER PRIMARY KEY, guid TEXT, timestamp REAL, data TEXT,"
                " tries INTEGER, etag TEXT)")
    con.executemany("INSERT INTO CacheEntry (guid, timestamp, data, tries) VALUES (?, ?, ?, 0)", rows)
    con.commit()
    con.close()
    return str(path)


def test_without_write_a_cache_is_counted_and_nothing_is_imported_with_write_it_is(database_url, db, tmp_path,
                                                                                   monkeypatch, capsys):
    monkeypatch.setenv("JOBS_FILE", str(tmp_path / "jobs.toml"))
    monkeypatch.delenv("JOBS_TOML", raising=False)
    urls = write(tmp_path, "name: a\nurl: https://example.org/a\n")
    (job,) = urlwatch.map_jobs(urlwatch.read_jobs(urls))
    day = datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp()
    cache = cache_file(tmp_path, [(job.guid, day, "one"), (job.guid, day + 600, "two")])

    assert migrate_fn.main(["--adopt-urlwatch", str(urls), cache]) == 0
    out = capsys.readouterr().out
    assert f"# {cache}: 2 snapshots of 1 job; nothing imported yet: --write imports them into $DATABASE_URL" \
        in out.splitlines()
    assert db.run("SELECT to_regclass('scrape_targets') IS NULL")[0][0]  # not even the schema was made
    assert not (tmp_path / "jobs.toml").exists()

    assert migrate_fn.main(["--adopt-urlwatch", str(urls), cache, "--write"]) == 0
    capsys.readouterr()
    assert db.run("SELECT count(*) FROM scrape_targets")[0][0] == 1
    assert (tmp_path / "jobs.toml").exists()


def test_snapshots_dated_ahead_of_this_clock_are_taken_as_seen_now_and_history_stays_sorted(database_url, db,
                                                                                           tmp_path, monkeypatch,
                                                                                           capsys):
    monkeypatch.setenv("JOBS_FILE", str(tmp_path / "jobs.toml"))
    monkeypatch.delenv("JOBS_TOML", raising=False)
    urls = write(tmp_path, "name: a\nurl: https://example.org/a\n")
    (job,) = urlwatch.map_jobs(urlwatch.read_jobs(urls))
    now = datetime.now(timezone.utc)
    cache = cache_file(tmp_path, [(job.guid, (now - timedelta(days=2)).timestamp(), "old"),
                                  (job.guid, (now + timedelta(days=400)).timestamp(), "from the future")])
    before = datetime.now(timezone.utc)
    assert migrate_fn.main(["--adopt-urlwatch", str(urls), cache, "--write"]) == 0
    out = capsys.readouterr().out
    assert (f"{cache}: 1 snapshot dated more than 5 minutes ahead of this machine's clock (another clock?):"
            " taken as seen now") in out.splitlines()
    rows = db.run("SELECT body, seen_at FROM scraps ORDER BY id")
    times = sorted(t for _, seen in rows for t in seen)
    assert [body for body, _ in rows] == ["old", "from the future"]
    assert times[-1] <= datetime.now(timezone.utc) and times[-1] >= before - timedelta(seconds=1)


def test_snapshots_over_the_page_cap_or_the_total_are_counted_and_the_newest_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(urlwatch, "MAX_SNAPSHOT_BYTES", 100)
    monkeypatch.setattr(urlwatch, "MAX_IMPORT_BYTES", 250)
    day = datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp()
    cache = urlwatch.read_cache(cache_file(tmp_path, [
        ("g", day, "a" * 90), ("g", day + 1, "b" * 90), ("g", day + 2, "huge" * 100), ("g", day + 3, "c" * 90),
        ("h", day + 4, "d" * 50)]))
    assert [data[0] for _, data in cache.history["g"]] == ["b", "c"]  # a is the oldest past 250 bytes
    assert [data[0] for _, data in cache.history["h"]] == ["d"]
    assert (cache.too_big, cache.beyond_total, cache.ahead) == (1, 1, 0)
    assert cache.notes("c.db") == ["c.db: 1 snapshot larger than 0 MB, a page's cap here: not imported",
                                   "c.db: 1 older snapshot beyond 0 MB imported in all: not imported"]


LAUGHS = "".join(f'{a}: &{a} [{", ".join([f"*{b}"] * 10)}]\n' for b, a in zip("abcdef", "bcdefg"))


def test_urlwatch_jobs_with_line_breaks_aliases_and_odd_filters_are_notes(tmp_path, monkeypatch, capsys):
    import tomllib

    from functions import migrate

    urls = tmp_path / "urls.yaml"
    urls.write_text('name: "nl"\nurl: "https://example.org/a"\n? "bad\\nkey"\n: 1\nfilter:\n  - "x\\ny"\n'
                    '---\nname: "laughs"\nurl: "https://example.org/b"\na: &a ["x","x","x","x","x","x","x","x","x","x"]\n'
                    + LAUGHS + "filter:\n  - css: *g\n"
                    '---\nname: "typed"\nurl: "https://example.org/c"\nfilter:\n  - css: [1, 2]\n  - re.sub: 5\n')
    monkeypatch.setenv("JOBS_FILE", str(tmp_path / "jobs.toml"))
    monkeypatch.delenv("JOBS_TOML", raising=False)
    assert migrate.main(["--adopt-urlwatch", str(urls)]) == 0
    out = capsys.readouterr().out
    assert [job["name"] for job in tomllib.loads(out)["scrape"]] == ["nl", "typed"]
    assert "# job #2: its YAML (aliases expanded) holds more than 100,000 values: not read, not written," \
           " its history not imported" in out.splitlines()
    assert len(out) < 20_000 and "not mapped" in out


def test_urlwatch_cache_rows_with_times_no_calendar_holds_are_skipped(tmp_path):
    import sqlite3

    from shared.app import urlwatch

    cache = tmp_path / "cache.db"
    con = sqlite3.connect(cache)
    con.execute("CREATE TABLE CacheEntry (id INTEGER PRIMARY KEY, guid TEXT, timestamp, data, tries INTEGER, etag TEXT)")
    con.executemany("INSERT INTO CacheEntry (guid, timestamp, data, tries) VALUES ('g', ?, ?, 0)",
                    [(1e20, "far"), ("soon", "text"), (-1e12, "before"), (1700000000, "good")])
    con.commit()
    con.close()
    (snapshot,) = urlwatch.read_cache(cache).history["g"]
    assert snapshot[1] == "good"
