"""The live board in a real headless Chromium against a running service fed by the simulated city."""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from gshp.config import parse_config
from gshp.devstack import Influxd, free_port
from gshp.evidence import PublicKey, verify_package
from tests.api.conftest import TOKENS, Running, city_yaml, serving

pytestmark = pytest.mark.integration

ARTIFACTS = Path(__file__).parents[2] / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

SHANGHAI = ZoneInfo("Asia/Shanghai")
MONTH = "(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
ZH_TIME = re.compile(r"\d{4}年\d{1,2}月\d{1,2}日 \d{2}:\d{2}:\d{2}")
EN_TIME = re.compile(rf"\d{{1,2}} {MONTH} \d{{4}}, \d{{2}}:\d{{2}}:\d{{2}}")
"""A time as the board writes it in Chinese (2026年7月2日 09:30:05) and in English (2 Jul 2026, 09:30:05)."""


def zh_time(iso: str) -> str:
    t = datetime.fromisoformat(iso).astimezone(SHANGHAI)
    return f"{t.year}年{t.month}月{t.day}日 {t:%H:%M:%S}"


def en_time(iso: str) -> str:
    t = datetime.fromisoformat(iso).astimezone(SHANGHAI)
    return f"{t.day} {t:%b %Y, %H:%M:%S}"


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
    expect(record).to_contain_text("TUF-2311-0042 · TUF-2000M · 2024年3月1日", timeout=30_000)
    expect(record).to_contain_text("宛计检字[2025]第118号 · 检定有效期至 2026年6月1日")
    expect(record.locator(".badge")).to_have_text("已过期")  # next_due has passed
    expect(page.locator("#meters tr[data-meter=R1] td.record")).to_have_text("—")
    page.locator("#lang").click()
    expect(record).to_contain_text("TUF-2311-0042 · TUF-2000M · 1 Mar 2024")
    expect(record).to_contain_text("宛计检字[2025]第118号 · calibration due 1 Jun 2026")
    page.close()


def _latest_data_day(running: Running) -> str:
    """The day of the newest reading in the configured zone, as the service tells it."""
    seen = [s["last_seen"] for s in running.get("/api/sites").json()["sites"] if s["last_seen"]]
    return max(datetime.fromisoformat(t) for t in seen).astimezone(ZoneInfo("Asia/Shanghai")).date().isoformat()


def test_the_report_picker_offers_the_latest_day_of_data_in_every_format(browser: Browser, running: Running) -> None:
    # the browser's clock and zone say 2026-07-02 in UTC: the day offered comes from the data, in Beijing time
    page = browser.new_page(locale="zh-CN", timezone_id="UTC", accept_downloads=True)
    page.clock.set_fixed_time(datetime(2026, 7, 2, 1, 30, tzinfo=ZoneInfo("Asia/Shanghai")))
    page.add_init_script(f"localStorage.setItem('gshp.token', '{TOKENS['viewer']}')")
    before = _latest_data_day(running)
    page.goto(running.url + "/")
    picker = page.locator("#reportDate")
    expect(picker).not_to_have_value("")
    day = picker.input_value()
    assert day in (before, _latest_data_day(running)) and day != "2026-07-01"
    assert page.locator("#reportFormat option").all_inner_texts() == ["CSV", "XLSX", "HTML"]
    downloads = {}
    for fmt in ("csv", "xlsx", "html"):
        page.locator("#reportFormat").select_option(fmt)
        with page.expect_download() as download:
            page.locator("#report").click()  # the token goes with it: every read needs one here
        assert download.value.suggested_filename == f"gshp-report-{day}.{fmt}"
        downloads[fmt] = Path(download.value.path()).read_bytes()
    assert downloads["csv"].decode("utf-8-sig").count("宛城区人民医院") >= 1
    assert downloads["xlsx"][:2] == b"PK" and b"<html" in downloads["html"][:500].lower()
    chosen = page.locator("#reportDay")  # the day spelled out in the board's language, not the browser's
    expect(chosen).to_have_text(re.compile(r"^\d{4}年\d{1,2}月\d{1,2}日$"))
    page.locator("#reportDate").fill("2026-06-30")  # a chosen day stays while the tables refresh
    expect(chosen).to_have_text("2026年6月30日")
    page.evaluate("document.querySelector('#sites').dataset.old = '1'; renderOverview()")
    expect(page.locator("#sites")).not_to_have_attribute("data-old", "1")  # re-drawn
    expect(picker).to_have_value("2026-06-30")
    expect(chosen).to_have_text("2026年6月30日")
    page.screenshot(path=str(ARTIFACTS / "board-report-picker.png"))
    page.locator("#lang").click()
    expect(chosen).to_have_text(re.compile(rf"^\d{{1,2}} {MONTH} \d{{4}}$"))
    picker.fill("2026-07-01")
    expect(chosen).to_have_text("1 Jul 2026")
    page.close()


def test_the_header_clock_says_it_shows_data_time_on_a_simulated_clock(browser: Browser, running: Running) -> None:
    page = open_board(browser, running, "viewer")
    clock = page.locator("#clock")
    expect(clock).to_have_attribute("data-kind", "data")
    expect(clock).to_have_text(re.compile(rf"^数据时间 {ZH_TIME.pattern}$"))

    def service_now() -> datetime:
        return datetime.fromisoformat(running.get("/api/me").json()["clock"]["now"])

    before = service_now()
    shown = datetime.strptime(clock.inner_text().split(" ", 1)[1], "%Y年%m月%d日 %H:%M:%S").replace(
        tzinfo=ZoneInfo("Asia/Shanghai"))
    after = service_now()
    # data time runs 600 times faster than the browser's wall clock, ahead of it by 10 min per second since the
    # service started: the header follows the service's clock (it ticks once a wall-clock second, 10 minutes of
    # data time, and extrapolates from the service's time as last received: a slow answer puts it behind by
    # 600 times its delay)
    assert before - timedelta(minutes=30) <= shown <= after + timedelta(minutes=2), (before, shown, after)
    assert shown > datetime.now(UTC) + timedelta(minutes=5)  # not the wall clock
    page.locator("#lang").click()
    expect(clock).to_have_text(re.compile(rf"^Data time {EN_TIME.pattern}$"))
    english = datetime.strptime(clock.inner_text().split(" ", 2)[2], "%d %b %Y, %H:%M:%S").replace(
        tzinfo=ZoneInfo("Asia/Shanghai"))
    assert shown <= english <= service_now() + timedelta(minutes=2), (shown, english)
    page.screenshot(path=str(ARTIFACTS / "board-data-time.png"))
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


PHONE = {"width": 390, "height": 844}


def assert_inside_the_screen(page: Page, figures: str, screen: dict[str, int] = PHONE) -> None:
    """Each figure (a CSS selector) is shown whole inside the phone's screen once the page is scrolled down to
    it (only down: a figure that needs a sideways scroll of its table is off the screen), and the page does not
    scroll sideways (found and measured in one pass: the board re-draws its tables every few seconds)."""
    boxes = page.evaluate("""sel => [...document.querySelectorAll(sel)].map(el => {
        window.scrollBy(0, el.getBoundingClientRect().top - window.innerHeight / 2);
        const r = el.getBoundingClientRect();
        return {x: r.x, y: r.y, width: r.width, height: r.height, html: el.outerHTML.slice(0, 120)};
    })""", figures)
    assert boxes
    for box in boxes:
        assert box["width"] > 0 and box["height"] > 0, box
        assert box["x"] >= 0 and box["x"] + box["width"] <= screen["width"], box
        assert box["y"] >= 0 and box["y"] + box["height"] <= screen["height"], box
    assert page.evaluate("document.documentElement.scrollWidth") <= screen["width"]


def test_phone_width_shows_every_key_figure_of_every_site_and_district(browser: Browser, running: Running) -> None:
    page = open_board(browser, running, "viewer", **PHONE)
    expect(page.locator("tr.site")).to_have_count(3)
    expect(page.locator("tr.site[data-site=hospital]")).to_have_attribute("data-status", "discharge", timeout=60_000)
    expect(page.locator("tr.site[data-site=hospital] td.bal1h .m3")).to_have_text(re.compile(r"m³$"))
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "board-phone.png"), full_page=True)
    # status, extraction, reinjection, 1 h deficit in m³ and %, drained today, alerts: each site's card
    assert_inside_the_screen(
        page, "tr.site :is(td.status .badge, td.ext, td.rei, td.bal1h .m3, td.bal1h .pct, td.drained, td.alerts)")
    expect(page.locator("tr.site[data-site=hospital] td.rei")).to_have_attribute("data-label", "回灌 m³/h")
    # every district's counts, offline ones too
    assert_inside_the_screen(page, "#districts tr.district :is(td.discharge, td.offline, td.drained)")
    for small in ({"width": 360, "height": 640}, {"width": 420, "height": 900}):  # the other phones
        page.set_viewport_size(small)
        assert_inside_the_screen(page, "tr.site :is(td.status .badge, td.ext, td.rei, td.bal1h, td.drained, "
                                       "td.alerts), #districts td.offline", small)
    page.set_viewport_size(PHONE)
    page.goto(running.url + "/#/sites/hospital")
    expect(page.locator("#meters tr[data-meter=E1] td.ts")).not_to_have_text("—", timeout=30_000)
    assert_inside_the_screen(page, "#meters tr :is(td.status .badge, td.rate, td.total, td.ts)")
    expect(page.locator("#chart svg text").first).to_be_visible()
    # the chart is drawn at its shown width: its labels are not squeezed sideways (one pass: the live flows
    # re-draw it)
    scale = page.evaluate("() => { const el = document.querySelector('#chart svg text');"
                          " const b = el.getBBox(), r = el.getBoundingClientRect();"
                          " return (r.width / b.width) / (r.height / b.height); }")
    assert 0.9 < scale < 1.1, scale
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / "board-site-phone.png"), full_page=True)
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
    row = page.locator("section.district[data-district=宛城区] tr.incident.kind-discharge.state-open",
                       has_text="宛城区人民医院")
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
    expect(page.locator("#siteIncidents tr.incident.kind-discharge").first).to_be_visible(timeout=90_000)
    expect(page.locator("#siteIncidents tr.incident.kind-discharge").first).to_contain_text("外排")
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


@pytest.fixture(scope="module")
def open_read(influxd: Influxd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """The test city with `api.loopback_read` (as in the demo): reading needs no token, acting needs one."""
    root = tmp_path_factory.mktemp("open-read")
    config = parse_config(city_yaml(root / "state", influxd.url, "api_open_read", free_port(), loopback_read=True))
    assert config.api.open_read
    with serving(config) as running:
        yield running


def test_an_open_board_offers_login_and_shows_who_is_logged_in(browser: Browser, open_read: Running) -> None:
    page = browser.new_page(locale="zh-CN")
    page.goto(open_read.url + "/")
    expect(page.locator("tr.site")).to_have_count(3)  # read without a token: no login asked for
    expect(page.locator("#login")).not_to_be_visible()
    who, login, logout = page.locator("#who"), page.locator("#loginBtn"), page.locator("#logout")
    expect(who).to_have_text("本机只读 · 查看 · 全部区县")
    expect(login).to_be_visible()
    expect(login).to_have_text("登录")
    expect(logout).to_be_hidden()
    page.screenshot(path=str(ARTIFACTS / "board-open-read.png"))
    login.click()
    page.locator("#token").fill(TOKENS["wancheng"])
    page.locator("#login button[value=ok]").click()
    expect(who).to_have_text("宛城区执法大队 · 执法 · 宛城区")
    expect(page.locator("tr.site")).to_have_count(2)  # the officer's district
    expect(logout).to_be_visible()
    expect(logout).to_have_text("退出")
    expect(login).to_be_hidden()
    page.screenshot(path=str(ARTIFACTS / "board-open-read-officer.png"))
    page.locator("#lang").click()
    expect(who).to_have_text("宛城区执法大队 · enforcement · 宛城区")
    expect(logout).to_have_text("Log out")
    logout.click()
    expect(who).to_have_text("local read-only · viewer · all districts")  # reading goes on without the token
    expect(login).to_be_visible()
    expect(login).to_have_text("Log in")
    expect(logout).to_be_hidden()
    expect(page.locator("#login")).not_to_be_visible()
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
    assert_inside_the_screen(page, "tr.incident :is(td.kind, td.drained, td.onset, td.case)")
    page.screenshot(path=str(ARTIFACTS / "incidents-phone.png"), full_page=True)
    row.locator("a").click()
    expect(page.locator("#case .case-status")).to_be_visible()
    expect(page.locator("#evidence")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(ARTIFACTS / "incident-phone.png"), full_page=True)
    page.close()


def test_alert_and_incident_summaries_and_dates_follow_the_language(browser: Browser, running: Running) -> None:
    page, alert, alert_id = _discharge_alert(browser, running, "viewer", "hospital")
    since = running.get(f"/api/alerts/{alert_id}").json()["starts_at"]
    summary = alert.locator(".summary")
    expect(summary).to_contain_text("抽水")
    when = alert.locator(".muted").first
    expect(when).to_contain_text(f"开始于 {zh_time(since)}")  # in Beijing time, the Chinese way
    page.locator("#lang").click()
    expect(summary).to_have_text(re.compile(r"^宛城区人民医院: .*extracted .* m³, reinjected .* deficit"))
    expect(when).to_contain_text(f"Since {en_time(since)}")
    assert not ZH_TIME.search(when.inner_text()) and not re.search(r"\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}/\d{4}",
                                                                   when.inner_text()), when.inner_text()
    page.screenshot(path=str(ARTIFACTS / "board-site-en.png"), full_page=True)
    page.goto(running.url + "/#/incidents")
    row = page.locator("tr.incident.kind-discharge.state-open", has_text="宛城区人民医院").first
    expect(row).to_be_visible(timeout=90_000)
    incident = running.get(f"/api/incidents/{row.get_attribute('data-incident')}").json()
    expect(row.locator("td.onset")).to_have_text(en_time(incident["started_at"]))
    row.locator("a").click()
    expect(page.locator("#incidentSummary")).to_have_text(re.compile(r"^宛城区人民医院: suspected discharge, .*since"))
    timeline = page.locator("ol.timeline li").first
    expect(timeline).to_contain_text(en_time(incident["timeline"][0]["at"]))
    page.locator("#lang").click()
    expect(page.locator("#incidentSummary")).to_have_text(re.compile(r"^宛城区人民医院 疑似外排，"))
    expect(timeline).to_contain_text(zh_time(incident["timeline"][0]["at"]))
    expect(page.locator(".cards")).to_contain_text(zh_time(incident["started_at"]))
    page.screenshot(path=str(ARTIFACTS / "incident-zh-dates.png"), full_page=True)
    page.close()


def test_the_board_shows_water_drained_today_and_since_an_incident_began(browser: Browser,
                                                                          running: Running) -> None:
    page = open_board(browser, running, "viewer")
    m3 = re.compile(r"^-?\d+\.\d m³\*?$")
    hospital = page.locator("tr.site[data-site=hospital] td.drained")
    expect(hospital).to_have_text(m3, timeout=60_000)
    expect(page.locator("#districts tr.district[data-district=宛城区] td.drained")).to_have_text(m3)
    api = {s["id"]: s["drained_today"] for s in running.get("/api/sites").json()["sites"]}["hospital"]
    assert api["drained_m3"] > 0
    page.goto(running.url + "/#/sites/hospital")
    expect(page.locator("#drainedToday")).to_have_text(m3)
    page.goto(running.url + "/#/incidents")
    row = page.locator("tr.incident.kind-discharge.state-open", has_text="宛城区人民医院").first
    expect(row).to_be_visible(timeout=90_000)
    expect(row.locator("td.drained")).to_have_text(m3)
    assert float(row.locator("td.drained").inner_text().split()[0]) > 0
    row.locator("a").click()
    expect(page.locator("#drainedSince")).to_have_text(m3)
    page.close()
