"""A PDF answer is stored as its text (pypdf, in the filter sandbox's workers, within their time
and memory limits); a PDF that cannot be read is that check's error, never a change."""

import pytest
from werkzeug import Response

from functions import scrape as scrape_fn


def pdf(text: str) -> bytes:
    """A one-page PDF showing `text` in Helvetica (written by hand: what a minutes PDF holds)."""
    stream = f"BT /F1 18 Tf 20 100 Td ({text}) Tj ET".encode()
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 400 144] /Contents 4 0 R"
               b" /Resources << /Font << /F1 5 0 R >> >> >>",
               b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


@pytest.fixture
def minutes(httpserver):
    state = {"body": pdf("Minutes: budget approved")}
    httpserver.expect_request("/minutes.pdf").respond_with_handler(
        lambda r: Response(state["body"], content_type="application/pdf"))
    state["url"] = httpserver.url_for("/minutes.pdf")
    return state


def test_a_pdf_is_stored_as_its_text_and_a_new_text_is_a_change(database_url, db, minutes, jobs_file, capsys):
    jobs_file(f'[[scrape]]\nname = "minutes"\nurl = "{minutes["url"]}"\n')
    assert scrape_fn.main([]) == 0
    assert db.run("SELECT body FROM scraps")[0][0] == "Minutes: budget approved\n"
    minutes["body"] = pdf("Minutes: budget approved, parks deferred")
    assert scrape_fn.main([]) == 0
    assert capsys.readouterr().out == "minutes: new\nminutes: changed\n"


def test_a_pdf_that_cannot_be_read_is_the_checks_error_never_a_change(database_url, db, minutes, jobs_file,
                                                                      capsys):
    jobs_file(f'[[scrape]]\nname = "minutes"\nurl = "{minutes["url"]}"\n')
    assert scrape_fn.main([]) == 0
    minutes["body"] = b"%PDF-1.4\n garbage, not a PDF at all"
    assert scrape_fn.main([]) == 1
    line = capsys.readouterr().out.splitlines()[-1]
    assert line.startswith("minutes: error: the PDF cannot be read"), line
    assert db.run("SELECT count(*) FROM scraps")[0][0] == 1


def test_filters_apply_to_a_pdfs_text(database_url, db, minutes, jobs_file, capsys):
    jobs_file(f'[[scrape]]\nname = "minutes"\nurl = "{minutes["url"]}"\nignore = ["budget \\\\w+"]\n')
    assert scrape_fn.main([]) == 0
    assert db.run("SELECT body FROM scraps")[0][0] == "Minutes:"
