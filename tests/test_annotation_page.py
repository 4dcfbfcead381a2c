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


def test_level_meter_target_timer_keys_zoom_length_and_a_phone_layout(tmp_path: Path) -> None:
    """What helps an annotator talk long enough, well: the input level moves with the (fake)
    microphone, the timer goes from too short to the target and past it (a 2-3 s target here, set
    on the server), R records and stops, Enter submits, the decoded length is shown, small images
    fill the column and zoom on click or Z, and on a 390 px phone Record and Submit are on screen."""
    clip = lj_clips()[0][0]
    args = ("--target-seconds", "2", "3", "--min-recording-seconds", "1")
    with annotation_app(tmp_path / "app", images=2, extra_serve_args=args) as app, chromium(fake_audio=clip) as browser:
        token = app.add_annotator("kim")
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(30_000)
        page.goto(app.base_url + "/")
        page.fill("#token", token)
        page.click("#signin")
        page.wait_for_function("document.getElementById('image').complete && document.getElementById('image').naturalWidth > 0")
        assert "small" in (page.get_attribute("#image", "class") or "")  # 160 px wide: scaled up, pixelated
        assert page.locator("#image").bounding_box()["width"] > 400
        page.click("#image")
        assert "zoomed" in (page.get_attribute("#figure", "class") or "")
        page.keyboard.press("z")
        assert "zoomed" not in (page.get_attribute("#figure", "class") or "")

        page.keyboard.press("r")  # record
        page.wait_for_function("document.getElementById('level').value > 0.05")  # the fake microphone is heard
        seen = []
        for _ in range(18):  # 4.5 s: the timer's class as it goes
            seen.append(page.evaluate("document.getElementById('timer').className"))
            page.wait_for_timeout(250)
        page.keyboard.press("r")  # stop
        order = [c for i, c in enumerate(seen) if c and (i == 0 or c != seen[i - 1])]
        assert order == ["short", "under", "target", "over"], seen
        page.wait_for_selector("#submit:not([disabled])")
        page.wait_for_function("document.getElementById('length').dataset.seconds > 3.5")
        assert page.inner_text("#length").startswith("length 0:0")
        assert page.evaluate("document.getElementById('level').value") == 0  # not listening any more

        page.keyboard.press("Enter")  # submit (4.5 s is past the 1 s minimum: no question)
        page.wait_for_function("document.getElementById('progress').textContent === '1 of 2 done'")
        assert page.inner_text("#timer") == "0:00"  # the timer starts over for the next image

        for width, height in ((1280, 800), (390, 844)):  # a laptop and a phone
            page.set_viewport_size({"width": width, "height": height})
            page.reload()
            page.wait_for_function("document.getElementById('image').complete && document.getElementById('image').naturalWidth > 0")
            for control in ("#record", "#stop", "#submit", "#status"):
                box = page.locator(control).bounding_box()
                assert box is not None and 0 <= box["y"] and box["y"] + box["height"] <= height, (width, control, box)
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), width  # no sideways scrolling
            page.screenshot(path=str(tmp_path / f"page-{width}.png"))


def test_a_silent_microphone_is_flagged(tmp_path: Path) -> None:
    """A muted microphone (chromium's fake device playing a silent WAV): the level meter stays
    flat and the page says no sound is coming in, within the first seconds."""
    import wave

    silent = tmp_path / "silence.wav"
    with wave.open(str(silent), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\0\0" * 16000 * 10)
    with annotation_app(tmp_path / "app", images=1) as app, chromium(fake_audio=silent) as browser:
        token = app.add_annotator("sam")
        page = browser.new_page()
        page.goto(app.base_url + "/")
        page.fill("#token", token)
        page.click("#signin")
        page.wait_for_selector("#work:not([hidden])")
        page.click("#record")
        page.wait_for_function("document.getElementById('status').textContent.includes('No sound from the microphone')", timeout=15_000)
        assert page.evaluate("document.getElementById('level').value") < 0.01
        page.click("#stop")


def test_the_page_passes_axe_core_accessibility_rules(tmp_path: Path) -> None:
    """axe-core (the rules browsers' accessibility audits use; bundled by axe-playwright-python) on
    the sign-in page and the signed-in page with a recording ready: no violation."""
    axe_sync = pytest.importorskip("axe_playwright_python.sync_playwright")
    clip = lj_clips()[0][0]
    with annotation_app(tmp_path / "app", images=1) as app, chromium(fake_audio=clip) as browser:
        token = app.add_annotator("lee")
        page = browser.new_page()
        page.goto(app.base_url + "/")
        axe = axe_sync.Axe()
        before = axe.run(page)
        assert before.violations_count == 0, before.generate_report()
        page.fill("#token", token)
        page.click("#signin")
        page.wait_for_function("document.getElementById('image').complete && document.getElementById('image').naturalWidth > 0")
        page.click("#record")
        page.wait_for_timeout(1500)
        page.click("#stop")
        page.wait_for_selector("#submit:not([disabled])")
        after = axe.run(page)
        assert after.violations_count == 0, after.generate_report()


def test_my_clips_play_back_and_the_last_image_recorded_again(tmp_path: Path) -> None:
    """"My clips" lists the annotator's own clips (after the last image too); each plays (its audio
    fetched with the token); the last image can be recorded again, which keeps both clips."""
    import httpx

    clip = lj_clips()[0][0]
    with annotation_app(tmp_path / "app", images=1) as app, chromium(fake_audio=clip) as browser:
        token = app.add_annotator("ida")
        page = browser.new_page()
        page.set_default_timeout(30_000)
        page.on("dialog", lambda d: d.accept())
        page.goto(app.base_url + "/")
        page.fill("#token", token)
        page.click("#signin")
        page.wait_for_selector("#work:not([hidden])")
        assert page.inner_text("#mine-count") == "0"
        page.click("#record")
        page.wait_for_timeout(2500)
        page.click("#stop")
        page.wait_for_selector("#submit:not([disabled])")
        page.click("#submit")
        page.wait_for_selector("#done:not([hidden])")  # the only image is done
        page.wait_for_function("document.getElementById('mine-count').textContent === '1'")
        page.click("#mine summary")
        page.click(".play-mine")
        page.wait_for_function("(() => { const a = document.getElementById('mine-player'); return a && a.currentTime > 0.3; })()")
        page.click("#again")  # the last image, recorded again
        page.wait_for_selector("#work:not([hidden])")
        page.click("#record")
        page.wait_for_timeout(2000)
        page.click("#stop")
        page.wait_for_selector("#submit:not([disabled])")
        page.click("#submit")
        page.wait_for_function("document.getElementById('mine-count').textContent === '2'")
        listed = httpx.get(app.base_url + "/api/clips", headers=app.headers(token), timeout=30).json()["clips"]
        assert len(listed) == 2 and listed[0]["image_id"] == listed[1]["image_id"] and listed[0]["sha256"] != listed[1]["sha256"]
        other = app.add_annotator("joe")  # someone else's clip is not theirs to play
        assert httpx.get(app.base_url + f"/api/clips/{listed[0]['id']}/audio", headers=app.headers(other), timeout=30).status_code == 404
        audio = httpx.get(app.base_url + f"/api/clips/{listed[0]['id']}/audio", headers=app.headers(token), timeout=30)
        assert audio.status_code == 200 and audio.headers["content-type"].startswith("audio/webm")
