"""The jobs file as people write it (shared/app/config.py): bounded, and every refusal one line
naming the file (and the job and key where there is one)."""

import pytest

from functions import scrape as scrape_fn
from shared.app import config


@pytest.fixture
def jobs(tmp_path, monkeypatch):
    path = tmp_path / "jobs.toml"
    monkeypatch.setenv("JOBS_FILE", str(path))
    monkeypatch.delenv("JOBS_TOML", raising=False)
    return path


@pytest.mark.parametrize("text, says", [
    ('[[scrape]]\nname = "a"\nurl = "http://x/"\nselect = ' + "[" * 50_000 + "]" * 50_000 + "\n",
     "not a jobs file: values nested too deeply"),
    ("[[scrape]\n", "not valid TOML"),
    ('[[scrape]]\nname = "a"\nurl = "http://x/"\nselect = {a = 1}\n',
     "[[scrape]] job 'a': key 'select' must be a string or a list of non-empty strings"),
])
def test_a_jobs_file_that_cannot_be_used_is_one_line_and_exit_2(jobs, capsys, text, says):
    jobs.write_text(text)
    assert scrape_fn.main([]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"error: {jobs}: ") and says in err and err.count("\n") == 1, err


def test_a_jobs_file_past_its_size_bound_is_not_read(jobs, monkeypatch):
    monkeypatch.setattr(config, "MAX_JOBS_FILE_BYTES", 100)
    jobs.write_text('[[scrape]]\nname = "a"\nurl = "http://x/"\n' + "# padding\n" * 20)
    with pytest.raises(config.ConfigError, match=r"larger than 0 MB: not a jobs file"):
        config.entries()


def test_a_doubled_dollar_is_the_literal_text_of_a_reference(jobs, monkeypatch):
    monkeypatch.setenv("TOKEN", "s3cret-token-value")
    jobs.write_text('[[scrape]]\nname = "a"\nurl = "http://x/?a=$${TOKEN}&b=${TOKEN}&c=$$${TOKEN}"\n')
    (entry,) = config.entries()
    assert config.build(entry).url == "http://x/?a=${TOKEN}&b=s3cret-token-value&c=$${TOKEN}"
