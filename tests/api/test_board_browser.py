"""The live board in a real headless Chromium against a running service fed by the simulated city."""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from gshp.evidence import PublicKey, verify_package
from tests.api.conftest import TOKENS, Running

pytestmark = pytest.mark.integration

ARTIFACTS = Path(__file__).parents[2] / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is not installed: run ./dev setup (it installs chromium and "
                    "fonts-wqy-microhei)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"])
        yield b
        b.close()


def open_board(browser: Browser, running: Running, token: str, width: int = 1280, height: int = 900) -> Page:
    page = browser.new_page(viewport={"width": width, "height": height}, locale="zh-CN")
    page.add_init_script(f"localStorage.setItem('gshp.token', '{TOKENS[token]}')")
    page.goto(running.url + "/")
    return page


def test_overview_lists_every_site_and_the_discharging_one_turns_red(browser: Browser, running: Running) -> None:
    page = open_board(browser, running, "viewer")
    expect(page.locator("tr.site")).to_have_count(3)
    expect(page.locator("#sites")).to_contain_text("向阳荷花广场")
    # the hospital drains 40 %: within the accelerated window it is flagged as a suspected discharge
    hospital = page.locator("tr.site[data-site=hospital]")
    expect(hospital).to_have_attribute("data-status", "discharge", timeout=60_000)
    expect(hospital.locator(".badge")).to_have_text("疑似外排")
    color = hospital.locator(".badge").evaluate("el => getComputedStyle(el).backgroundColor")
    assert color == "rgb(198, 40, 40)"
    expect(page.locator("tr.site[data-site=hehua]")).to_have_attribute("data-status", "normal")
    expect(page.locator("#districts")).to_contain_text("宛城区")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "board-overview.png"), full_page=True)
    page.locator("#lang").click()
    expect(page.locator("header .brand")).to_have_text("Groundwater reinjection monitor")
    expect(hospital.locator(".badge")).to_have_text("Suspected discharge")
    page.close()


def _discharge_alert(browser: Browser, running: Running, token: str, site: str) -> tuple[Page, Locator, str]:
    """The site page as `token` sees it, once its first discharge alert shows: (page, that alert, its id)."""
    page = open_board(browser, running, token)
    page.goto(running.url + f"/#/sites/{site}")
    first = page.locator(".alert.kind-discharge").first
    expect(first).to_be_visible(timeout=60_000)
    alert_id = first.get_attribute("data-alert-id")
    assert alert_id is not None
    return page, page.locator(f".alert[data-alert-id='{alert_id}']"), alert_id


def test_enforcement_can_acknowledge_on_the_site_page(browser: Browser, running: Running) -> None:
    page, alert, _ = _discharge_alert(browser, running, "wancheng", "hospital")
    expect(page.locator("#chart svg polyline")).to_have_count(3)
    alert.locator("input[name=text]").fill("已派人核查")
    alert.locator("button[data-action=ack]").click()
    expect(alert.locator(".acked")).to_have_text("已确认")
    expect(alert.locator(".notes")).to_contain_text("已派人核查")
    page.screenshot(path=str(ARTIFACTS / "board-site.png"), full_page=True)
    page.close()


def test_enforcement_closes_a_case_with_an_outcome_from_the_picker(browser: Browser, running: Running) -> None:
    page, alert, alert_id = _discharge_alert(browser, running, "wancheng", "hospital")
    picker = alert.locator("select[name=outcome]")
    assert picker.locator("option").all_inner_texts() == ["选择核查结果", "确认外排", "未发现外排", "计量故障",
                                                          "维护（回扬）", "其他"]
    alert.locator("button[data-action=close]").click()  # no outcome chosen: nothing is sent
    expect(picker).to_be_focused()
    assert running.get(f"/api/alerts/{alert_id}").json()["outcome"] is None
    picker.select_option("confirmed_discharge")
    alert.locator("input[name=text]").fill("排水管接入雨水井，已责令整改")
    alert.locator("button[data-action=close]").click()
    expect(alert.locator(".outcome")).to_contain_text("确认外排")
    expect(alert.locator(".outcome")).to_contain_text("排水管接入雨水井，已责令整改")
    outcome = running.get(f"/api/alerts/{alert_id}").json()["outcome"]
    assert (outcome["outcome"], outcome["text"], outcome["by"]) == \
        ("confirmed_discharge", "排水管接入雨水井，已责令整改", "宛城区执法大队")
    page.locator("#lang").click()
    expect(alert.locator(".outcome")).to_contain_text("Discharge confirmed")
    expect(alert.locator("select[name=outcome] option[value=no_discharge]")).to_have_text("No discharge found")
    page.close()


def test_the_site_page_updates_meter_readings_from_the_stream(browser: Browser, running: Running) -> None:
    page = open_board(browser, running, "viewer")
    page.goto(running.url + "/#/sites/hehua")
    when = page.locator("#meters tr[data-meter=E1] td.ts")
    expect(when).not_to_have_text("—", timeout=30_000)
    first = when.inner_text()
    expect(when).not_to_have_text(first, timeout=30_000)  # a new reading arrived over SSE, no reload
    total = float(page.locator("#meters tr[data-meter=E1] td.total").inner_text())
    assert total > 0
    page.close()


def test_the_board_shows_todays_arrival_rate_of_each_meter_site_and_district(browser: Browser,
                                                                           running: Running) -> None:
    page = open_board(browser, running, "viewer")
    rate = re.compile(r"^\d{1,3}\.\d%$")
    expect(page.locator("tr.site[data-site=hehua] td.arrival")).to_have_text(rate, timeout=60_000)
    expect(page.locator("#districts td.arrival").first).to_have_text(rate)
    page.goto(running.url + "/#/sites/hehua")
    expect(page.locator("#arrival")).to_have_text(rate)
    expect(page.locator("#meters tr[data-meter=E1] td.arrival")).to_have_text(rate)
    page.close()


def test_the_site_page_shows_each_meters_record(browser: Browser, running: Running) -> None:
    page = open_board(browser, running, "viewer")
    page.goto(running.url + "/#/sites/hospital")
    record = page.locator("#meters tr[data-meter=E1] td.record")
    expect(record).to_contain_text("TUF-2311-0042 · TUF-2000M · 2024-03-01", timeout=30_000)
    expect(record).to_contain_text("宛计检字[2025]第118号 · 检定有效期至 2026-06-01")
    expect(record.locator(".badge")).to_have_text("已过期")  # next_due has passed
    expect(page.locator("#meters tr[data-meter=R1] td.record")).to_have_text("—")
    page.close()


def test_the_report_link_offers_yesterday_in_the_configured_time_zone(browser: Browser, running: Running) -> None:
    # 01:30 in Beijing is still the previous day in UTC: "now minus 24 h" in UTC would give the day before
    page = browser.new_page(locale="zh-CN", timezone_id="UTC")
    page.clock.set_fixed_time(datetime(2026, 7, 2, 1, 30, tzinfo=ZoneInfo("Asia/Shanghai")))
    page.add_init_script(f"localStorage.setItem('gshp.token', '{TOKENS['viewer']}')")
    page.goto(running.url + "/")
    link = page.locator("#report")
    expect(link).to_have_attribute("data-date", "2026-07-01")
    expect(link).to_contain_text("(2026-07-01)")
    with page.expect_download() as download:
        link.click()
    assert download.value.suggested_filename == "gshp-report-2026-07-01.csv"
    page.close()


def test_api_docs_render_offline(browser: Browser, running: Running) -> None:
    page = browser.new_page()
    outside: list[str] = []
    origin = running.url + "/"
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(origin)
               else (outside.append(route.request.url), route.abort()))
    page.goto(running.url + "/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("gshp-monitor", timeout=30_000)
    expect(page.locator(".opblock-summary-path[data-path='/api/sites/{site_id}/maintenance']")).to_have_count(2)
    expect(page.locator(".opblock-summary-path[data-path='/api/sites/{site_id}/balance']")).to_have_count(1)
    assert outside == [], outside
    page.close()


def test_viewer_sees_no_acknowledge_controls(browser: Browser, running: Running) -> None:
    page = open_board(browser, running, "viewer")
    page.goto(running.url + "/#/sites/hospital")
    expect(page.locator(".alert").first).to_be_visible(timeout=60_000)
    expect(page.locator("button[data-action=ack]")).to_have_count(0)
    page.close()


def test_phone_width_keeps_the_page_inside_the_screen(browser: Browser, running: Running) -> None:
    page = open_board(browser, running, "viewer", width=390, height=844)
    expect(page.locator("tr.site")).to_have_count(3)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(ARTIFACTS / "board-phone.png"), full_page=True)
    page.close()


def test_a_bad_token_asks_for_another(browser: Browser, running: Running) -> None:
    page = browser.new_page()
    page.add_init_script("localStorage.setItem('gshp.token', 'wrong')")
    page.goto(running.url + "/")
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#loginError")).to_have_text("令牌无效")
    page.locator("#token").fill(TOKENS["viewer"])
    page.locator("#login button[value=ok]").click()
    expect(page.locator("tr.site")).to_have_count(3)
    page.close()


def test_an_officer_walks_an_incident_from_the_list_to_the_evidence_package(browser: Browser,
                                                                            running: Running) -> None:
    """In Chinese: incidents view → incident → acknowledge → note → close → evidence download."""
    page = open_board(browser, running, "wancheng")
    expect(page.locator("#who")).to_have_text("宛城区执法大队 · 执法 · 宛城区")
    page.locator("#navIncidents").click()
    row = page.locator("section.district[data-district=宛城区] tr.incident.state-open", has_text="宛城区人民医院")
    expect(row.first).to_be_visible(timeout=90_000)
    expect(page.locator("section.district[data-district=卧龙区]")).to_have_count(0)  # not this officer's district
    expect(row.first.locator("td.case")).to_have_text("待处理")
    page.screenshot(path=str(ARTIFACTS / "incidents-list.png"), full_page=True)
    row.first.locator("a").click()
    expect(page.locator("#incidentTitle")).to_contain_text("宛城区人民医院")
    expect(page.locator("#incidentTitle")).to_contain_text("外排")
    status = page.locator("#case .case-status")
    expect(status).to_have_text("待处理")
    form = page.locator("#caseForm")
    form.locator("input[name=text]").fill("已派人核查")
    form.locator("button[data-action=ack]").click()
    expect(status).to_have_text("已确认")
    form.locator("input[name=text]").fill("现场发现排水管接入雨水井，已取水样 S-0815")
    form.locator("button[data-action=notes]").click()
    expect(page.locator("#case ol.history")).to_contain_text("已取水样 S-0815")
    photo = ARTIFACTS / "drain-photo.png"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    page.locator("#attachForm input[name=file]").set_input_files(str(photo))
    page.locator("#attachForm input[name=label]").fill("排水口照片")
    page.locator("#attachForm button").click()
    expect(page.locator("#case ul.attachments")).to_contain_text("排水口照片")
    assert form.locator("select[name=outcome] option").all_inner_texts() == [
        "选择核查结果", "确认外排", "未发现外排", "计量故障", "维护（回扬）", "其他"]
    form.locator("select[name=outcome]").select_option("confirmed_discharge")
    form.locator("input[name=text]").fill("已责令整改")
    form.locator("button[data-action=close]").click()
    expect(status).to_have_text("已结案")
    expect(page.locator("#case .outcome")).to_have_text("确认外排")
    expect(page.locator("#case ol.history li")).to_have_count(4)  # ack, note, attachment, close
    expect(page.locator("#caseForm button[data-action=reopen]")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "incident-closed.png"), full_page=True)
    with page.expect_download() as download:
        page.locator("#evidence").click()
    saved = ARTIFACTS / "incident-evidence.zip"
    download.value.save_as(saved)
    assert download.value.suggested_filename.startswith("gshp-evidence-")
    key = PublicKey.from_pem(running.get("/api/evidence/key").content)
    ok = verify_package(saved.read_bytes(), key)
    case = json.loads(zipfile.ZipFile(saved).read("incident.json"))["case"]
    assert ok.files[-1] == "report.html" and case["status"] == "closed" and case["outcome"] == "confirmed_discharge"
    report = browser.new_page(locale="zh-CN")
    report.set_content(zipfile.ZipFile(saved).read("report.html").decode("utf-8"))
    expect(report.locator("h1")).to_contain_text("证据报告")
    report.screenshot(path=str(ARTIFACTS / "incident-evidence-report.png"), full_page=True)
    report.close()
    page.close()


def test_the_site_page_lists_its_incidents(browser: Browser, running: Running) -> None:
    page = open_board(browser, running, "viewer")
    page.goto(running.url + "/#/sites/hospital")
    expect(page.locator("#siteIncidents tr.incident").first).to_be_visible(timeout=90_000)
    expect(page.locator("#siteIncidents tr.incident").first).to_contain_text("外排")
    page.close()


def test_login_and_logout_are_buttons_that_show_role_and_districts(browser: Browser, running: Running) -> None:
    page = browser.new_page(locale="zh-CN")
    page.goto(running.url + "/")
    expect(page.locator("#login")).to_be_visible()  # every read needs a token here
    page.locator("#login button[value=cancel]").click()
    expect(page.locator("#login")).not_to_be_visible()
    login = page.locator("#loginBtn")
    expect(login).to_be_visible()
    expect(login).to_have_text("登录")
    login.click()
    page.locator("#token").fill(TOKENS["wancheng"])
    page.locator("#login button[value=ok]").click()
    expect(page.locator("#who")).to_have_text("宛城区执法大队 · 执法 · 宛城区")
    expect(page.locator("#logout")).to_be_visible()
    expect(login).to_be_hidden()
    page.locator("#lang").click()
    expect(page.locator("#who")).to_have_text("宛城区执法大队 · enforcement · 宛城区")
    page.locator("#logout").click()
    expect(page.locator("#login")).to_be_visible()
    assert page.evaluate("localStorage.getItem('gshp.token')") is None
    page.close()


def test_a_district_chosen_under_another_token_is_forgotten(browser: Browser, running: Running) -> None:
    page = browser.new_page(locale="zh-CN")
    page.add_init_script(f"localStorage.setItem('gshp.token', '{TOKENS['wancheng']}');"
                         "localStorage.setItem('gshp.district', '卧龙区')")
    page.goto(running.url + "/")
    expect(page.locator("tr.site")).to_have_count(2)  # 宛城区's sites, not an error about 卧龙区
    expect(page.locator("#app .error")).to_have_count(0)
    page.close()


def test_the_incident_pages_fit_a_phone(browser: Browser, running: Running) -> None:
    page = open_board(browser, running, "wancheng", width=390, height=844)
    page.goto(running.url + "/#/incidents")
    row = page.locator("tr.incident").first
    expect(row).to_be_visible(timeout=90_000)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    row.locator("a").click()
    expect(page.locator("#case .case-status")).to_be_visible()
    expect(page.locator("#evidence")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(ARTIFACTS / "incident-phone.png"), full_page=True)
    page.close()
