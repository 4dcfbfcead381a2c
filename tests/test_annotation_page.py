"""The annotation page's own behaviour in a real browser (Debian's chromium through Playwright,
the fixtures of tests/annotation_fixtures.py): what is shown before and after signing in, a
refused token, signing out, re-recording before submitting, a refused upload's message.
The full record -> submit -> transcribe flow is tests/test_annotation_browser.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from annotation_fixtures import annotation_app, chromium, lj_clips

pytestmark = pytest.mark.slow


def test_sign_in_states_re_record_and_a_refused_upload(tmp_path: Path) -> None:
    clip = lj_clips()[0][0]
    bad = tmp_path / "notes.wav"
    bad.write_text("this is not audio\n" * 50)
    with annotation_app(tmp_path / "app", images=2) as app, chromium(fake_audio=clip) as browser:
        token = app.add_annotator("pat")
        page = browser.new_page()
        page.goto(app.base_url + "/")
        assert page.is_visible("#token") and not page.is_visible("#work") and not page.is_visible("#signout")

        page.fill("#token", "cur_not-a-token")
        page.click("#signin")
        page.wait_for_function("document.getElementById('status').textContent.includes('not accepted')")
        assert page.is_visible("#token") and not page.is_visible("#work")

        page.fill("#token", token)
        page.click("#signin")
        page.wait_for_selector("#image[src]")
        assert not page.is_visible("#token") and page.is_visible("#work") and page.is_visible("#signout")
        assert page.inner_text("#progress") == "0 of 2 done"
        assert page.is_disabled("#submit") and page.is_disabled("#stop")

        page.click("#record")  # record, then record again before submitting: the first take is dropped
        page.wait_for_timeout(1200)
        page.click("#stop")
        page.wait_for_function("!document.getElementById('submit').disabled")
        first = page.get_attribute("#playback", "src")
        page.click("#record")
        assert page.is_disabled("#submit")  # the first take is gone
        page.wait_for_timeout(1500)
        page.click("#stop")
        page.wait_for_function("!document.getElementById('submit').disabled")
        assert page.get_attribute("#playback", "src") not in (None, first)

        page.set_input_files("#file", str(bad))  # a file that is not audio: refused, with the reason
        page.click("#submit")
        page.wait_for_function("document.getElementById('status').textContent.startsWith('Not saved')")
        assert "not an audio file" in page.inner_text("#status")
        assert page.inner_text("#progress") == "0 of 2 done" and not page.is_disabled("#submit")

        page.reload()  # the token stays for the tab (sessionStorage)
        page.wait_for_selector("#image[src]")
        assert not page.is_visible("#token")
        page.click("#signout")
        assert page.is_visible("#token") and not page.is_visible("#work")
        assert page.evaluate("sessionStorage.length") == 0
