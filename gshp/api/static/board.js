/* gshp-monitor live board: overview of every site and a page per site. No external libraries. */
"use strict";

const I18N = {
  zh: {
    title: "地温空调回灌监管", allDistricts: "全部区县", loading: "加载中…", logout: "退出",
    loginTitle: "请输入访问令牌", login: "登录", badToken: "令牌无效",
    arrival: "今日到报率", district: "区县", sites: "站点数", online: "在线", discharge: "疑似外排", fault: "数据故障", offline: "离线",
    site: "站点", status: "状态", extraction: "抽水 m³/h", reinjection: "回灌 m³/h", bal1h: "1小时差额",
    bal24h: "24小时差额", lastReading: "最近数据", alerts: "告警", meters: "流量计", meter: "表号", role: "类型",
    rate: "瞬时流量 m³/h", total: "累计 m³", signal: "信号 %", errorCode: "错误码", time: "时间",
    normal: "正常", unknown: "无数据", deficit: "差额 m³/h", liveChart: "实时流量",
    noAlerts: "暂无告警", ack: "确认", note: "备注", addNote: "添加备注", close: "结案", outcome: "现场核查结果",
    acked: "已确认", firing: "告警中", pending: "待定", resolved: "已恢复", since: "开始于", ended: "结束于",
    evidence: "证据", window: "窗口", extracted: "抽水", reinjected: "回灌", threshold: "阈值",
    role_extraction: "抽水", role_reinjection: "回灌", role_discharge: "排水", ago: "前", s: "秒", m: "分", h: "小时",
    report: "日报下载", date: "日期", maintenance: "申报维护（回扬）", back: "← 返回总览", overview: "区县汇总",
    allSites: "全部站点", incomplete: "数据不全", kind_discharge: "外排", kind_data_quality: "数据质量",
    severity_critical: "严重", severity_high: "高", severity_warning: "警告", severity_info: "提示", severity: "严重程度", state: "状态", kindCol: "类别",
    chooseOutcome: "选择核查结果", outcome_confirmed_discharge: "确认外排", outcome_no_discharge: "未发现外排",
    outcome_meter_fault: "计量故障", outcome_maintenance: "维护（回扬）", outcome_other: "其他", closed: "已结案",
    declaredBy: "申报人", configDeclared: "配置文件",
    login_btn: "登录", cancel: "取消", incidents: "事件", incidentsTitle: "外排与异常事件", noIncidents: "暂无事件",
    pastIncidents: "历史事件", who_viewer: "查看", who_enforcement: "执法", who_admin: "管理员",
    allDistrictsShort: "全部区县", anonymous: "本机只读",
    kind_evasion: "规避监测", kind_meter_fault: "计量故障", kind_compliance: "许可合规",
    kind_calibration: "检定到期", record: "计量记录", calDue: "检定有效期至", overdue: "已过期",
    state_open: "进行中", state_resolved: "已恢复", case_new: "待处理", case_acknowledged: "已确认", case_closed: "已结案",
    onset: "估计开始", firstFiring: "首次告警", endedAt: "结束", volume: "估计外排量", band: "不确定区间",
    peakDeficit: "最大差额", meanDeficit: "平均差额", episodes: "复发次数", caseStatus: "案件状态",
    timeline: "时间线", caseHistory: "案件记录", evidenceDownload: "下载证据包", reopen: "重新立案", reason: "原因",
    windowAlerts: "窗口告警（证据）", claims: "事件期间申报的维护", stillOpen: "仍在持续", caseActions: "案件处理",
    change_opened: "事件开始", change_reopened: "复发", change_escalated: "升级", change_resolved: "恢复",
    change_case_closed: "结案", action_ack: "确认", action_note: "备注", action_close: "结案",
    action_reopen: "重新立案", action_attach: "附件", outcome_no_discharge_found: "未发现外排", case: "案件",
    attachments: "附件", attach: "上传附件", attachLabel: "附件说明（如：排水口照片、水样编号）", open: "查看",
    drainedToday: "今日外排 m³", drainedSince: "开始以来外排", format: "格式", download: "下载", dataTime: "数据时间",
    asOf: "截至",
  },
  en: {
    title: "Groundwater reinjection monitor", allDistricts: "All districts", loading: "Loading…", logout: "Log out",
    loginTitle: "Enter your access token", login: "Log in", badToken: "Invalid token",
    arrival: "Arrival today", district: "District", sites: "Sites", online: "Online", discharge: "Suspected discharge", fault: "Data fault",
    offline: "Offline", site: "Site", status: "Status", extraction: "Extraction m³/h", reinjection: "Reinjection m³/h",
    bal1h: "1 h deficit", bal24h: "24 h deficit", lastReading: "Last reading", alerts: "Alerts", meters: "Meters",
    meter: "Meter", role: "Role", rate: "Rate m³/h", total: "Total m³", signal: "Signal %", errorCode: "Error",
    time: "Time", normal: "Normal", unknown: "No data", deficit: "Deficit m³/h", liveChart: "Live flow",
    noAlerts: "No alerts", ack: "Acknowledge", note: "Note", addNote: "Add note", close: "Close", outcome: "On-site check result",
    acked: "Acknowledged", firing: "Firing", pending: "Pending", resolved: "Resolved", since: "Since", ended: "Ended",
    evidence: "Evidence", window: "Window", extracted: "Extracted", reinjected: "Reinjected", threshold: "Threshold",
    role_extraction: "Extraction", role_reinjection: "Reinjection", role_discharge: "Drain", ago: "ago", s: "s", m: "min", h: "h",
    report: "Daily report", date: "Date", maintenance: "Declared maintenance (backwash)", back: "← Overview",
    overview: "Districts", allSites: "All sites", incomplete: "incomplete", kind_discharge: "Discharge",
    kind_data_quality: "Data quality", severity_critical: "Critical", severity_high: "High", severity_warning: "Warning",
    severity_info: "Info", severity: "Severity", state: "State", kindCol: "Kind", chooseOutcome: "Choose the check result", outcome_confirmed_discharge: "Discharge confirmed",
    outcome_no_discharge: "No discharge found", outcome_meter_fault: "Meter fault",
    outcome_maintenance: "Maintenance (backwash)", outcome_other: "Other", closed: "Closed", declaredBy: "Declared by",
    configDeclared: "config file",
    login_btn: "Log in", cancel: "Cancel", incidents: "Incidents", incidentsTitle: "Discharge and evasion incidents",
    noIncidents: "No incidents", pastIncidents: "Incidents", who_viewer: "viewer", who_enforcement: "enforcement",
    who_admin: "admin", allDistrictsShort: "all districts", anonymous: "local read-only",
    kind_evasion: "Evasion", kind_meter_fault: "Meter fault", kind_compliance: "Compliance",
    kind_calibration: "Calibration due", record: "Meter record", calDue: "calibration due", overdue: "overdue",
    state_open: "Open", state_resolved: "Resolved", case_new: "New", case_acknowledged: "Acknowledged",
    case_closed: "Closed", onset: "Estimated onset", firstFiring: "First alert", endedAt: "Ended",
    volume: "Estimated discharge", band: "Uncertainty band", peakDeficit: "Peak deficit", meanDeficit: "Mean deficit",
    episodes: "Episodes", caseStatus: "Case", timeline: "Timeline", caseHistory: "Case history",
    evidenceDownload: "Download evidence package", reopen: "Reopen", reason: "Reason",
    windowAlerts: "Window alerts (evidence)", claims: "Maintenance declared during the incident",
    stillOpen: "still open", caseActions: "Case actions", change_opened: "Opened", change_reopened: "Recurred",
    change_escalated: "Escalated", change_resolved: "Resolved", change_case_closed: "Case closed",
    action_ack: "Acknowledged", action_note: "Note", action_close: "Closed", action_reopen: "Reopened",
    action_attach: "Attachment", outcome_no_discharge_found: "No discharge found", case: "Case",
    attachments: "Attachments", attach: "Upload", attachLabel: "What it shows (e.g. drain photo, sample number)",
    open: "Open",
    drainedToday: "Drained today m³", drainedSince: "Drained since it began", format: "Format", download: "Download",
    dataTime: "Data time", asOf: "as of",
  },
};

const state = {
  lang: localStorage.getItem("gshp.lang") || "zh",
  token: localStorage.getItem("gshp.token") || "",
  tz: "Asia/Shanghai",
  me: null,
  district: localStorage.getItem("gshp.district") || "",
  streamAbort: null,
  timer: null,
  clock: null,  // the service's clock (`/api/me`): kind, speed, and its time `now` at the wall-clock `at`
  reportFormat: "csv",
  view: 0,  // bumped by every route(): a render that finds it changed after a fetch gives way to the newer one
};

const t = (key) => (I18N[state.lang] && I18N[state.lang][key]) || I18N.zh[key] || key;

/* What POST /api/alerts/{id}/close accepts as `outcome` (the on-site check result). */
const OUTCOMES = ["confirmed_discharge", "no_discharge", "meter_fault", "maintenance", "other"];
const outcomeLabel = (o) => (OUTCOMES.includes(o) || CASE_OUTCOMES.includes(o) ? t("outcome_" + o) : o);
/* What POST /api/incidents/{id}/close accepts as `outcome` (exact strings). */
const CASE_OUTCOMES = ["confirmed_discharge", "no_discharge_found", "meter_fault", "maintenance", "other"];
const mayWrite = () => state.me && (state.me.role === "enforcement" || state.me.role === "admin");
const $ = (sel) => document.querySelector(sel);

function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
}

function num(value, digits = 1) {
  return value === null || value === undefined || Number.isNaN(value) ? "—" : Number(value).toFixed(digits);
}

/* An instant's calendar fields in the configured time zone (zero-padded strings). */
function localParts(instant) {
  const parts = new Intl.DateTimeFormat("en-GB", {
    timeZone: state.tz, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
    second: "2-digit", hourCycle: "h23",
  }).formatToParts(instant);
  return Object.fromEntries(parts.map((p) => [p.type, p.value]));
}

const MONTHS_EN = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/* A calendar day in the board's language: 2026年7月2日 in Chinese, 2 Jul 2026 in English. */
function fmtDay(year, month, day) {
  return state.lang === "en" ? `${Number(day)} ${MONTHS_EN[Number(month) - 1]} ${year}`
    : `${year}年${Number(month)}月${Number(day)}日`;
}

/* A time in the configured time zone, in the board's language: 2026年7月2日 09:30:05 in Chinese,
   2 Jul 2026, 09:30:05 in English (24-hour clock in both). */
function fmtTime(iso) {
  if (!iso) return "—";
  const p = localParts(new Date(iso));
  return `${fmtDay(p.year, p.month, p.day)}${state.lang === "en" ? "," : ""} ${p.hour}:${p.minute}:${p.second}`;
}

/* A calendar date the API gives as YYYY-MM-DD (a meter's installation, a calibration's due day, a report's
   day), in the board's language. */
function fmtDate(ymd) {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(ymd || "");
  return m ? fmtDay(m[1], m[2], m[3]) : (ymd || "—");
}

/* The calendar date (YYYY-MM-DD) of an instant in the configured time zone. */
function localDate(instant) {
  const p = localParts(new Date(instant));
  return `${p.year}-${p.month}-${p.day}`;
}

function fmtAge(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 90) return `${Math.round(seconds)}${t("s")}${state.lang === "zh" ? "" : " "}${t("ago")}`;
  if (seconds < 5400) return `${Math.round(seconds / 60)}${t("m")}${state.lang === "zh" ? "" : " "}${t("ago")}`;
  return `${(seconds / 3600).toFixed(1)}${t("h")}${state.lang === "zh" ? "" : " "}${t("ago")}`;
}

/* Today's arrival rate (到报率): the share of expected reports that arrived. */
function arrivalPct(rate) {
  return rate === null || rate === undefined ? "—" : `${num(rate, 1)}%`;
}

function pct(balance) {
  if (!balance || balance.deficit_pct === null || balance.deficit_pct === undefined) return "—";
  const text = `${num(balance.deficit_pct, 1)}%`;
  if (balance.stale) return stale(text, balance.age_s);
  return balance.complete === false ? `<span class="muted" title="${t("incomplete")}">${text}*</span>` : text;
}

/* A figure that is not current (a meter offline, or a window ending long ago): greyed, with its age. */
function stale(text, age) {
  return `<span class="stale" title="${t("incomplete")}">${text}* <small>${esc(fmtAge(age))}</small></span>`;
}

/* A site's live flow: greyed with the age of its oldest reading when an offline meter is left out. */
function flow(s, key) {
  return s.flows_complete === false ? stale(num(s[key]), s.flows_age_s) : num(s[key]);
}

function badge(status) {
  return `<span class="badge status-${esc(status)}">${esc(t(status))}</span>`;
}

async function api(path, options = {}) {
  const headers = Object.assign({"Accept": "application/json"}, options.headers || {});
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  const response = await fetch(path, Object.assign({}, options, {headers}));
  if (response.status === 401) {
    askToken();
    throw new Error("unauthorized");
  }
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(body.detail || `${response.status}`);
  }
  return response.json();
}

function askToken(message) {
  const dialog = $("#login");
  $("#loginError").textContent = message || "";
  if (!dialog.open) dialog.showModal();
}

$("#login").addEventListener("close", () => {
  if ($("#login").returnValue !== "ok") return;  // cancelled: keep who is logged in
  $("#login").returnValue = "";
  state.token = $("#token").value.trim();
  localStorage.setItem("gshp.token", state.token);
  start();
});

$("#loginBtn").addEventListener("click", () => askToken());

$("#logout").addEventListener("click", () => {
  localStorage.removeItem("gshp.token");
  state.token = "";
  location.reload();
});

$("#lang").addEventListener("click", () => {
  state.lang = state.lang === "zh" ? "en" : "zh";
  localStorage.setItem("gshp.lang", state.lang);
  applyLang();
  tick();
  route();
});

$("#district").addEventListener("change", (e) => {
  state.district = e.target.value;
  localStorage.setItem("gshp.district", state.district);
  route();
});

function applyLang() {
  document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
  document.title = t("title");
  $("#lang").textContent = state.lang === "zh" ? "English" : "中文";
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  showWho();
}

/* Who is logged in: name, role and districts, beside the login/logout button. */
function showWho() {
  const who = $("#who");
  if (!state.me) { who.textContent = ""; return; }
  const districts = state.me.districts ? state.me.districts.join("、") : t("allDistrictsShort");
  const name = state.token ? state.me.name : t("anonymous");
  who.textContent = `${name} · ${t("who_" + state.me.role)} · ${districts}`;
  who.dataset.role = state.me.role;
}

/* The service's time now, extrapolated from its last report at its speed (data time on a simulated clock). */
function serviceNow() {
  const c = state.clock;
  return c ? new Date(c.now + (Date.now() - c.at) * c.speed) : new Date();
}

function syncClock(iso) {
  if (state.clock && iso) Object.assign(state.clock, {now: Date.parse(iso), at: Date.now()});
}

/* The header clock: the service's time; "data time" when the service runs on a simulated clock. */
function tick() {
  const data = Boolean(state.clock && state.clock.kind !== "system");
  const clock = $("#clock");
  clock.dataset.kind = data ? "data" : "system";
  clock.textContent = `${data ? t("dataTime") + " " : ""}${fmtTime(serviceNow().toISOString())}`;
}

/* ---------------------------------------------------------------- overview */

/* A table cell that carries its column's name, shown beside the value when rows become cards on a phone. */
function cell(label, html, cls = "num") {
  return `<td class="${cls}" data-label="${esc(label)}">${html}</td>`;
}

/* A window's deficit as m³ and %. */
function deficit(balance) {
  if (!balance) return "—";
  return `<span class="m3">${num(balance.deficit_m3, 1)} m³</span> <span class="pct">${pct(balance)}</span>`;
}

/* Water drained (extracted − reinjected) since `from`, as of the end of complete data. */
function drained(d) {
  if (!d) return "—";
  const text = `${num(d.drained_m3, 1)} m³`;
  const title = `${fmtTime(d.from)} – ${fmtTime(d.as_of)}`;
  return d.complete ? `<span title="${esc(title)}">${text}</span>`
    : `<span class="muted" title="${esc(title)} · ${t("incomplete")}">${text}*</span>`;
}

/* The latest day with data, in the configured zone: the day of the newest reading (data time, not the
   browser's clock), or the service's today before any reading. */
function latestDataDay(data) {
  const seen = data.sites.map((s) => s.last_seen).filter(Boolean).map((x) => Date.parse(x));
  return localDate(seen.length ? Math.max(...seen) : Date.parse(data.now));
}

function siteRows(sites) {
  return sites.map((s) => `
    <tr class="site row-${esc(s.status)}" data-site="${esc(s.id)}" data-status="${esc(s.status)}">
      <td class="name"><a href="#/sites/${encodeURIComponent(s.id)}">${esc(s.name)}</a></td>
      ${cell(t("district"), esc(s.district), "hide-narrow")}
      ${cell(t("status"), badge(s.status), "status")}
      ${cell(t("extraction"), flow(s, "extraction_m3h"), "num ext")}
      ${cell(t("reinjection"), flow(s, "reinjection_m3h"), "num rei")}
      ${cell(t("bal1h"), deficit(s.balance && s.balance["1h"]), "num bal1h")}
      ${cell(t("drainedToday"), drained(s.drained_today), "num drained")}
      ${cell(t("bal24h"), pct(s.balance && s.balance["24h"]), "num hide-narrow")}
      ${cell(t("lastReading"), fmtAge(s.age_s), "num hide-narrow")}
      ${cell(t("arrival"), arrivalPct(s.arrival && s.arrival.rate_pct), "num hide-narrow arrival")}
      ${cell(t("alerts"), s.alerts_firing || "0", "num alerts")}
    </tr>`).join("");
}

function districtRows(districts) {
  return districts.map((d) => `
    <tr class="district" data-district="${esc(d.district)}"><td class="name">${esc(d.district)}</td>
    ${cell(t("sites"), d.sites)}${cell(t("online"), d.online)}${cell(t("discharge"), d.discharge, "num discharge")}
    ${cell(t("fault"), d.fault)}${cell(t("offline"), d.offline, "num offline")}
    ${cell(t("arrival"), arrivalPct(d.arrival && d.arrival.rate_pct), "num arrival")}
    ${cell(t("drainedToday"), drained(d.drained_today), "num drained")}</tr>`).join("");
}

/* The report form: a day (by default the latest with data) and a format; kept across refreshes. */
function reportForm(day) {
  const formats = ["csv", "xlsx", "html"].map((f) =>
    `<option value="${f}"${f === state.reportFormat ? " selected" : ""}>${f.toUpperCase()}</option>`).join("");
  return `<form id="reportForm" class="report"><label>${t("report")}
    <input type="date" id="reportDate" name="date" value="${esc(day)}" max="${esc(day)}" required></label>
    <output id="reportDay" for="reportDate">${esc(fmtDate(day))}</output>
    <select id="reportFormat" name="format" aria-label="${t("format")}">${formats}</select>
    <button id="report" class="primary" type="submit">${t("download")}</button>
    <span id="reportError" role="alert"></span></form>`;
}

async function renderOverview(current = () => true) {
  const query = state.district ? `?district=${encodeURIComponent(state.district)}` : "";
  const data = await api(`/api/sites${query}`);
  if (!current()) return;
  syncClock(data.now);
  const select = $("#district");
  const known = new Set([...select.options].map((o) => o.value));
  for (const d of data.districts) {
    if (!known.has(d.district)) select.add(new Option(d.district, d.district));
  }
  select.value = state.district;
  const day = latestDataDay(data);
  const head = (cols) => cols.map(([key, cls]) => `<th class="${cls || "num"}">${t(key)}</th>`).join("");
  const tables = `
    <h2>${t("overview")}</h2>
    <div class="tablewrap"><table id="districts" class="cardlist">
      <thead><tr>${head([["district", "name"], ["sites"], ["online"], ["discharge"], ["fault"], ["offline"],
        ["arrival"], ["drainedToday"]])}</tr></thead>
      <tbody>${districtRows(data.districts)}</tbody></table></div>
    <h2>${t("allSites")}</h2>
    <div class="tablewrap"><table id="sites" class="cardlist">
      <thead><tr>${head([["site", "name"], ["district", "hide-narrow"], ["status", "status"], ["extraction"],
        ["reinjection"], ["bal1h"], ["drainedToday"], ["bal24h", "num hide-narrow"], ["lastReading", "num hide-narrow"],
        ["arrival", "num hide-narrow"], ["alerts"]])}</tr></thead>
      <tbody>${siteRows(data.sites)}</tbody></table></div>`;
  // the report form stays while the tables refresh: a day or format being chosen is not reset under the user
  let box = $("#overview");
  if (!box || box.dataset.lang !== state.lang) {
    $("#app").innerHTML = `<div id="overview" data-lang="${state.lang}"></div>${reportForm(day)}`;
    box = $("#overview");
    $("#reportForm").addEventListener("submit", (e) => {
      e.preventDefault();
      state.reportFormat = $("#reportFormat").value;
      downloadReport($("#reportDate").value, state.reportFormat);
    });
    $("#reportDate").addEventListener("input", (e) => {
      e.target.dataset.touched = "1";
      $("#reportDay").textContent = fmtDate(e.target.value);
    });
  } else if (!$("#reportDate").dataset.touched) {
    $("#reportDate").value = day;  // a new day of data
    $("#reportDay").textContent = fmtDate(day);
  }
  $("#reportDate").max = day;
  box.innerHTML = tables;
  document.querySelectorAll("tr.site").forEach((tr) => tr.addEventListener("click", (e) => {
    if (e.target.tagName !== "A") location.hash = `#/sites/${encodeURIComponent(tr.dataset.site)}`;
  }));
}

/* Download a daily report (csv, xlsx or html, in the board's language), with the token when one is set. */
async function downloadReport(date, format) {
  const q = new URLSearchParams({date, format, language: state.lang});
  if (state.district) q.set("district", state.district);
  const headers = state.token ? {Authorization: `Bearer ${state.token}`} : {};
  const response = await fetch(`/api/reports/daily?${q}`, {headers});
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    $("#reportError").textContent = body.detail || `${response.status}`;
    return;
  }
  $("#reportError").textContent = "";
  const blob = await response.blob();
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = `gshp-report-${date}.${format}`;
  a.click();
}

/* ---------------------------------------------------------------- site page */

/* The live flows as an SVG drawn at the width it is shown at (labels keep their shape on a phone). */
function chart(points) {
  const box = $("#chart");
  const width = Math.max(280, Math.round((box ? box.clientWidth : $("#app").clientWidth) - 16)), height = 260, pad = 36;
  if (points.length < 2) return `<p class="muted">${t("unknown")}</p>`;
  const xs = points.map((p) => Date.parse(p.ts));
  const series = [["extraction_m3h", "#1565c0"], ["reinjection_m3h", "#2e7d32"], ["deficit_m3h", "#c62828"]];
  const values = points.flatMap((p) => series.map(([k]) => p[k]));
  const lo = Math.min(0, ...values), hi = Math.max(1, ...values);
  const x0 = Math.min(...xs), x1 = Math.max(...xs);
  const sx = (x) => pad + (x - x0) / Math.max(1, x1 - x0) * (width - 2 * pad);
  const sy = (y) => height - pad - (y - lo) / (hi - lo) * (height - 2 * pad);
  const lines = series.map(([k, color]) =>
    `<polyline fill="none" stroke="${color}" stroke-width="2" points="${points.map((p, i) => `${sx(xs[i]).toFixed(1)},${sy(p[k]).toFixed(1)}`).join(" ")}"/>`).join("");
  const ticks = [lo, (lo + hi) / 2, hi].map((v) =>
    `<text x="2" y="${sy(v) + 4}" font-size="11" fill="#69737f">${num(v, 0)}</text>
     <line x1="${pad}" x2="${width - pad}" y1="${sy(v)}" y2="${sy(v)}" stroke="#eee"/>`).join("");
  const fmt = (x) => { const p = localParts(new Date(x)); return `${p.hour}:${p.minute}`; };
  return `<svg viewBox="0 0 ${width} ${height}" role="img">${ticks}${lines}
    <text x="${pad}" y="${height - 8}" font-size="11" fill="#69737f">${fmt(x0)}</text>
    <text x="${width - pad}" y="${height - 8}" font-size="11" fill="#69737f" text-anchor="end">${fmt(x1)}</text></svg>
    <div class="legend"><span><i style="background:#1565c0"></i>${t("extraction")}</span>
    <span><i style="background:#2e7d32"></i>${t("reinjection")}</span><span><i style="background:#c62828"></i>${t("deficit")}</span></div>`;
}

/* A meter's live cells (rate, total, signal, error code, time) from its latest reading. */
function meterCells(r) {
  return `${cell(t("rate"), num(r.rate_m3h, 2), "num live rate")}${cell(t("total"), num(r.total_m3, 1), "num live total")}
    ${cell(t("signal"), num(r.signal_pct, 0), "num live hide-narrow")}${cell(t("errorCode"), esc(r.error_code ?? "—"), "num live hide-narrow")}
    ${cell(t("time"), esc(fmtTime(r.ts)), "num live ts")}`;
}

function alertCard(a) {
  const ev = a.evidence || {};
  const canWrite = mayWrite() && !a.readOnly;
  const notes = (a.notes || []).map((n) => `<li>${esc(fmtTime(n.at))} ${esc(n.who)}: ${esc(n.text)}</li>`).join("");
  const options = OUTCOMES.map((o) => `<option value="${o}">${esc(t("outcome_" + o))}</option>`).join("");
  const actions = canWrite ? `
    <form data-alert="${esc(a.id)}">
      <input type="text" name="text" placeholder="${t("note")}">
      ${a.acknowledged ? "" : `<button class="primary" data-action="ack" type="submit">${t("ack")}</button>`}
      <button data-action="notes" type="submit">${t("addNote")}</button>
      <select name="outcome" aria-label="${t("outcome")}"><option value="">${t("chooseOutcome")}</option>${options}</select>
      <button data-action="close" type="submit">${t("close")}</button>
    </form>` : "";
  const closed = a.outcome ? `<div class="outcome" data-outcome="${esc(a.outcome.outcome)}">${t("closed")} · ${t("outcome")}:
    ${esc(outcomeLabel(a.outcome.outcome))}${a.outcome.text ? ` · ${esc(a.outcome.text)}` : ""} · ${esc(a.outcome.by)}
    ${esc(fmtTime(a.outcome.at))}</div>` : "";
  return `<div class="alert kind-${esc(a.kind)} state-${esc(a.state)}" data-alert-id="${esc(a.id)}">
    <strong>${esc(t("kind_" + a.kind))} · ${esc(t("severity_" + a.severity))} · ${esc(t(a.state))}</strong>
    ${a.acknowledged ? ` · <span class="acked">${t("acked")}</span>` : ""}
    <div class="summary">${esc((a.summaries && a.summaries[state.lang]) || a.summary)}</div>
    <div class="muted">${t("since")} ${esc(fmtTime(a.starts_at))}${a.ends_at ? ` · ${t("ended")} ${esc(fmtTime(a.ends_at))}` : ""}
    ${ev.window ? ` · ${t("window")} ${esc(ev.window)}` : ""}${ev.extracted_m3 !== undefined ? ` · ${t("extracted")} ${num(ev.extracted_m3)} m³ · ${t("reinjected")} ${num(ev.reinjected_m3)} m³` : ""}
    ${ev.threshold_pct !== undefined ? ` · ${t("threshold")} ${num(ev.threshold_pct)}%` : ""}</div>
    ${notes ? `<ul class="notes">${notes}</ul>` : ""}${closed}${actions}</div>`;
}

function meterRecord(rec) {
  if (!rec) return "—";
  const cal = rec.calibration;
  const parts = [rec.serial, rec.model, rec.installed && fmtDate(rec.installed)].filter(Boolean).map(esc);
  if (cal) parts.push(`${esc(cal.number)} · ${t("calDue")} ${esc(fmtDate(cal.next_due))}${cal.overdue ? ` <span class="badge status-fault">${t("overdue")}</span>` : ""}`);
  return parts.join(" · ") || "—";
}

async function renderSite(id, current = () => true) {
  const s = await api(`/api/sites/${encodeURIComponent(id)}`);
  if (!current()) return;
  const meters = s.meters.map((m) => {
    const r = m.latest || {};
    return `<tr data-meter="${esc(m.id)}"><td class="name">${esc(m.id)}</td>${cell(t("role"), esc(t("role_" + m.role)), "")}
      ${cell(t("status"), badge(m.status), "status")}${cell(t("arrival"), arrivalPct(m.arrival_pct), "num arrival")}
      ${cell(t("record"), meterRecord(m.record), "record hide-narrow")}${meterCells(r)}</tr>`;
  }).join("");
  const maintenance = (s.maintenance || []).map((w) =>
    `<li>${esc(fmtTime(w.start))} – ${esc(fmtTime(w.end))} · ${esc(w.reason || "")} · ≤ ${num(w.volume_cap_m3, 1)} m³
     · ${t("declaredBy")} ${w.source === "api" ? `${esc(w.declared_by)} ${esc(fmtTime(w.declared_at))}` : t("configDeclared")}</li>`).join("");
  $("#app").innerHTML = `
    <p><a href="#/">${t("back")}</a></p>
    <h2>${esc(s.name)} <span class="muted">· ${esc(s.district)}</span> ${badge(s.status)}</h2>
    <div class="cards">
      <div class="card"><div class="muted">${t("extraction")}</div><div class="big" id="ext">${flow(s, "extraction_m3h")}</div></div>
      <div class="card"><div class="muted">${t("reinjection")}</div><div class="big" id="rei">${flow(s, "reinjection_m3h")}</div></div>
      <div class="card"><div class="muted">${t("bal1h")}</div><div class="big" id="bal1h">${deficit(s.balance && s.balance["1h"])}</div></div>
      <div class="card"><div class="muted">${t("drainedToday")}</div><div class="big" id="drainedToday">${drained(s.drained_today)}</div>
        <div class="muted">${s.drained_today ? `${t("asOf")} ${esc(fmtTime(s.drained_today.as_of))}` : ""}</div></div>
      <div class="card"><div class="muted">${t("bal24h")}</div><div class="big">${pct(s.balance && s.balance["24h"])}</div></div>
      <div class="card"><div class="muted">${t("arrival")}</div><div class="big" id="arrival">${arrivalPct(s.arrival && s.arrival.rate_pct)}</div></div>
    </div>
    <h2>${t("liveChart")}</h2><div class="chart" id="chart">${chart(s.history)}</div>
    <h2>${t("meters")}</h2>
    <div class="tablewrap"><table id="meters" class="cardlist"><thead><tr><th>${t("meter")}</th><th>${t("role")}</th><th>${t("status")}</th>
      <th class="num">${t("arrival")}</th><th class="hide-narrow">${t("record")}</th><th class="num">${t("rate")}</th><th class="num">${t("total")}</th><th class="num hide-narrow">${t("signal")}</th>
      <th class="num hide-narrow">${t("errorCode")}</th><th class="num">${t("time")}</th></tr></thead>
      <tbody>${meters}</tbody></table></div>
    ${maintenance ? `<h2>${t("maintenance")}</h2><ul>${maintenance}</ul>` : ""}
    <h2>${t("pastIncidents")}</h2><div id="siteIncidents"><p class="muted">${t("loading")}</p></div>
    <h2>${t("alerts")}</h2><div id="alerts">${s.alerts.length ? s.alerts.map(alertCard).join("") : `<p class="muted">${t("noAlerts")}</p>`}</div>`;
  bindAlertForms(() => refreshAlerts(id));
  api(`/api/incidents?site=${encodeURIComponent(id)}`).then((data) => {
    if (current() && $("#siteIncidents")) $("#siteIncidents").innerHTML = incidentTable(data.incidents, false);
  }).catch(() => {});
  $("#alerts").addEventListener("focusout", () => {
    setTimeout(() => { if ($("#alerts") && $("#alerts").dataset.stale) refreshAlerts(id); }, 500);
  });
  const history = s.history.slice();
  openStream(`site=${encodeURIComponent(id)}`, (kind, data) => {
    if (kind === "reading" && data.site === id) {
      const row = document.querySelector(`#meters tr[data-meter="${CSS.escape(data.meter)}"]`);
      if (row) row.querySelectorAll("td.live").forEach((td) => td.remove());
      if (row) row.insertAdjacentHTML("beforeend", meterCells(data));
    } else if (kind === "flow" && data.site === id) {
      history.push(data);
      if (history.length > 2000) history.shift();
      $("#chart").innerHTML = chart(history);
      if (data.complete !== false) {  // else the cards keep the greyed figures and their age from the API
        $("#ext").textContent = num(data.extraction_m3h);
        $("#rei").textContent = num(data.reinjection_m3h);
      }
    } else if ((kind === "alert" || kind === "ack") && data.site === id) {
      refreshAlerts(id);
    }
  });
}

/* Re-draw the alert list with fresh data, but never under an officer who is typing a note — judged again
   once the data is here: the officer may have started while it was on its way. */
async function refreshAlerts(id) {
  const busy = (box) => box.contains(document.activeElement) ||
    [...box.querySelectorAll("input[type=text], select")].some((input) => input.value);
  let box = $("#alerts");
  if (!box) return;
  if (busy(box)) {
    box.dataset.stale = "1";
    return;
  }
  const s = await api(`/api/sites/${encodeURIComponent(id)}`);
  box = $("#alerts");
  if (!box) return;
  if (busy(box)) {
    box.dataset.stale = "1";
    return;
  }
  box.dataset.stale = "";
  box.innerHTML = s.alerts.length ? s.alerts.map(alertCard).join("") : `<p class="muted">${t("noAlerts")}</p>`;
  bindAlertForms(() => refreshAlerts(id));
}

function bindAlertForms(refresh) {
  document.querySelectorAll("form[data-alert]").forEach((form) => {
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const action = e.submitter ? e.submitter.dataset.action : "notes";
      const text = form.elements.text.value;
      const outcome = form.elements.outcome.value;
      const body = action === "ack" ? {comment: text} : action === "close" ? {outcome, text} : {text};
      if (action === "notes" && !text) return;
      if (action === "close" && !outcome) {
        form.elements.outcome.focus();
        return;
      }
      try {
        await api(`/api/alerts/${encodeURIComponent(form.dataset.alert)}/${action}`, {
          method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
        form.elements.text.value = "";
        form.elements.outcome.value = "";
        if (document.activeElement) document.activeElement.blur();
        refresh();
      } catch (err) {
        alert(err.message);
      }
    });
  });
}

/* ---------------------------------------------------------------- incidents */

function volumeText(v) {
  return v ? `${num(v.estimate, 1)} m³` : "—";
}

function bandText(v) {
  return v ? `${num(v.low, 1)} – ${num(v.high, 1)} m³` : "—";
}

function incidentTable(incidents, withDistrict = true) {
  if (!incidents.length) return `<p class="muted">${t("noIncidents")}</p>`;
  const rows = incidents.map((i) => `
    <tr class="incident kind-${esc(i.kind)} state-${esc(i.state)} severity-${esc(i.severity)}" data-incident="${esc(i.id)}">
      <td class="name"><a href="#/incidents/${encodeURIComponent(i.id)}">${esc(i.site_name || i.site)}</a></td>
      ${withDistrict ? cell(t("district"), esc(i.district), "hide-narrow") : ""}
      ${cell(t("kindCol"), esc(t("kind_" + i.kind)), "kind")}
      ${cell(t("severity"), `<span class="sev sev-${esc(i.severity)}">${esc(t("severity_" + i.severity))}</span>`, "")}
      ${cell(t("state"), esc(t("state_" + i.state)), "")}
      ${cell(t("volume"), volumeText(i.volume_m3))}
      ${cell(t("drainedSince"), i.drained ? drained(i.drained) : "—", "num drained")}
      ${cell(t("peakDeficit"), i.peak_deficit_pct === null ? "—" : num(i.peak_deficit_pct, 1) + "%", "num hide-narrow")}
      ${cell(t("onset"), esc(fmtTime(i.started_at)), "num onset")}
      ${cell(t("case"), esc(t("case_" + i.case.status)), `case case-${esc(i.case.status)}`)}
    </tr>`).join("");
  return `<div class="tablewrap"><table class="incidents cardlist"><thead><tr><th>${t("site")}</th>
    ${withDistrict ? `<th class="hide-narrow">${t("district")}</th>` : ""}<th>${t("kindCol")}</th>
    <th>${t("severity")}</th><th>${t("state")}</th><th class="num">${t("volume")}</th><th class="num">${t("drainedSince")}</th>
    <th class="num hide-narrow">${t("peakDeficit")}</th><th class="num">${t("onset")}</th>
    <th>${t("case")}</th></tr></thead><tbody>${rows}</tbody></table></div>`;
}

function bindIncidentRows() {
  document.querySelectorAll("tr.incident").forEach((tr) => tr.addEventListener("click", (e) => {
    if (e.target.tagName !== "A") location.hash = `#/incidents/${encodeURIComponent(tr.dataset.incident)}`;
  }));
}

/* Every visible incident, per district: open first, then by severity and volume (the API's order). */
async function renderIncidents(current = () => true) {
  const query = state.district ? `?district=${encodeURIComponent(state.district)}` : "";
  const data = await api(`/api/incidents${query}`);
  if (!current()) return;
  const districts = [...new Set(data.incidents.map((i) => i.district))].sort();
  const sections = districts.map((d) => `<section class="district" data-district="${esc(d)}"><h3>${esc(d)}</h3>
    ${incidentTable(data.incidents.filter((i) => i.district === d), false)}</section>`).join("");
  $("#app").innerHTML = `<p><a href="#/">${t("back")}</a></p><h2>${t("incidentsTitle")}</h2>
    <div id="incidents">${sections || `<p class="muted">${t("noIncidents")}</p>`}</div>`;
  bindIncidentRows();
}

function caseHistory(entries) {
  if (!entries.length) return `<p class="muted">—</p>`;
  return `<ol class="history">${entries.map((h) => {
    const d = h.detail || {};
    const said = [d.outcome ? outcomeLabel(d.outcome) : "", d.comment, d.text, d.reason, d.label].filter(Boolean).join(" · ");
    return `<li data-action="${esc(h.action)}">${esc(fmtTime(h.at))} · ${esc(h.by)} · <b>${esc(t("action_" + h.action))}</b>${said ? ` · ${esc(said)}` : ""}</li>`;
  }).join("")}</ol>`;
}

function caseForm(i) {
  if (!mayWrite()) return "";
  const status = i.case.status;
  const options = CASE_OUTCOMES.map((o) => `<option value="${o}">${esc(t("outcome_" + o))}</option>`).join("");
  return `<form id="caseForm" data-incident="${esc(i.id)}">
    <input type="text" name="text" placeholder="${t("note")} / ${t("reason")}" maxlength="4000">
    ${status === "new" ? `<button class="primary" data-action="ack" type="submit">${t("ack")}</button>` : ""}
    <button data-action="notes" type="submit">${t("addNote")}</button>
    ${status === "closed" ? `<button data-action="reopen" type="submit">${t("reopen")}</button>` : `
      <select name="outcome" aria-label="${t("outcome")}"><option value="">${t("chooseOutcome")}</option>${options}</select>
      <button data-action="close" type="submit">${t("close")}</button>`}
  </form><p class="error" id="caseError"></p>`;
}

async function renderIncident(id, current = () => true) {
  const i = await api(`/api/incidents/${encodeURIComponent(id)}`);
  if (!current()) return;
  const summary = (i.summary && (i.summary[state.lang] || i.summary.zh)) || "";
  const timeline = i.timeline.map((e) => `<li>${esc(fmtTime(e.at))} · <b>${esc(t("change_" + e.change))}</b> ·
    ${esc(t("severity_" + e.severity))}${e.volume_m3 ? ` · ${volumeText(e.volume_m3)}` : ""}</li>`).join("");
  const claims = (i.maintenance_claims || []).map((c) => `<li>${esc(fmtTime(c.from))} – ${esc(fmtTime(c.to))} ·
    ${esc(c.reason)} · ≤ ${num(c.volume_cap_m3, 1)} m³ · ${esc(c.declared_by)}</li>`).join("");
  const outcome = i.case.outcome ? ` · ${t("outcome")}: <span class="outcome">${esc(outcomeLabel(i.case.outcome))}</span>` : "";
  $("#app").innerHTML = `
    <p><a href="#/incidents">← ${t("incidents")}</a> · <a href="#/sites/${encodeURIComponent(i.site)}">${esc(i.site_name || i.site)}</a></p>
    <h2 id="incidentTitle">${esc(i.site_name || i.site)} <span class="muted">· ${esc(i.district)}</span> ·
      ${esc(t("kind_" + i.kind))} <span class="sev sev-${esc(i.severity)}">${esc(t("severity_" + i.severity))}</span>
      <span class="state state-${esc(i.state)}">${esc(t("state_" + i.state))}</span></h2>
    <p id="incidentSummary">${esc(summary)}</p>
    <div class="cards">
      <div class="card"><div class="muted">${t("volume")}</div><div class="big" id="volume">${volumeText(i.volume_m3)}</div>
        <div class="muted">${t("band")} ${bandText(i.volume_m3)}</div></div>
      <div class="card"><div class="muted">${t("peakDeficit")} / ${t("meanDeficit")}</div>
        <div class="big">${i.peak_deficit_pct === null ? "—" : num(i.peak_deficit_pct, 1) + "%"}</div>
        <div class="muted">${i.mean_deficit_pct === null ? "—" : num(i.mean_deficit_pct, 1) + "%"}</div></div>
      <div class="card"><div class="muted">${t("onset")}</div><div>${esc(fmtTime(i.started_at))}</div>
        <div class="muted">${t("firstFiring")} ${esc(fmtTime(i.first_firing_at))}</div></div>
      ${i.drained ? `<div class="card"><div class="muted">${t("drainedSince")}</div><div class="big" id="drainedSince">${drained(i.drained)}</div>
        <div class="muted">${t("asOf")} ${esc(fmtTime(i.drained.as_of))}</div></div>` : ""}
      <div class="card"><div class="muted">${t("endedAt")}</div><div>${i.ended_at ? esc(fmtTime(i.ended_at)) : t("stillOpen")}</div>
        <div class="muted">${t("episodes")} ${i.episodes}</div></div>
    </div>
    <h2>${t("caseActions")}</h2>
    <div class="casebox" id="case" data-status="${esc(i.case.status)}">
      <div>${t("caseStatus")}: <b class="case-status">${esc(t("case_" + i.case.status))}</b>${outcome}</div>
      ${caseForm(i)}
      <h3>${t("caseHistory")}</h3>${caseHistory(i.case.history)}
      <h3>${t("attachments")}</h3>${attachmentList(i)}${attachForm()}
    </div>
    <p><button id="evidence" class="primary" type="button">${t("evidenceDownload")}</button></p>
    <h2>${t("timeline")}</h2><ol class="timeline">${timeline}</ol>
    ${claims ? `<h2>${t("claims")}</h2><ul>${claims}</ul>` : ""}
    <h2>${t("windowAlerts")}</h2><div id="alerts">${i.alerts.map((a) => alertCard(Object.assign({}, a, {readOnly: true}))).join("")}</div>`;
  $("#evidence").addEventListener("click", () => downloadEvidence(i.id));
  document.querySelectorAll("button[data-attachment]").forEach((b) => b.addEventListener("click",
    () => openAttachment(i.id, b.dataset.attachment)));
  const upload = $("#attachForm");
  if (upload) upload.addEventListener("submit", (e) => uploadAttachment(e, upload, id));
  const form = $("#caseForm");
  if (form) form.addEventListener("submit", (e) => submitCase(e, form, id));
}

async function submitCase(e, form, id) {
  e.preventDefault();
  const action = e.submitter ? e.submitter.dataset.action : "notes";
  const text = form.elements.text.value;
  const outcome = form.elements.outcome ? form.elements.outcome.value : "";
  if ((action === "notes" || action === "reopen") && !text) { form.elements.text.focus(); return; }
  if (action === "close" && !outcome) { form.elements.outcome.focus(); return; }
  const body = action === "ack" ? {comment: text || null} : action === "close" ? {outcome, comment: text}
    : action === "reopen" ? {reason: text} : {text};
  try {
    await api(`/api/incidents/${encodeURIComponent(id)}/${action}`, {
      method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
    await renderIncident(id);
  } catch (err) {
    $("#caseError").textContent = err.message;
  }
}

function attachmentList(i) {
  const items = (i.case.attachments || []).map((a) => `<li data-sha256="${esc(a.sha256)}">${esc(a.label || a.content_type)}
    · ${esc(a.by)} · ${esc(fmtTime(a.at))} · <code>${esc(a.sha256.slice(0, 16))}…</code>
    <button type="button" data-attachment="${esc(a.id)}">${t("open")}</button></li>`).join("");
  return items ? `<ul class="attachments">${items}</ul>` : `<p class="muted">—</p>`;
}

function attachForm() {
  if (!mayWrite()) return "";
  return `<form id="attachForm"><input type="file" name="file" accept="image/jpeg,image/png,application/pdf" required>
    <input type="text" name="label" maxlength="200" placeholder="${t("attachLabel")}">
    <button type="submit">${t("attach")}</button></form>`;
}

async function uploadAttachment(e, form, id) {
  e.preventDefault();
  const file = form.elements.file.files[0];
  if (!file) return;
  const headers = {"Content-Type": file.type || "application/octet-stream"};
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  const q = new URLSearchParams({label: form.elements.label.value});
  const response = await fetch(`/api/incidents/${encodeURIComponent(id)}/attachments?${q}`, {method: "POST", headers, body: file});
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    $("#caseError").textContent = body.detail || `${response.status}`;
    return;
  }
  await renderIncident(id);
}

async function openAttachment(id, attachment) {
  const headers = state.token ? {Authorization: `Bearer ${state.token}`} : {};
  const response = await fetch(`/api/incidents/${encodeURIComponent(id)}/attachments/${encodeURIComponent(attachment)}`, {headers});
  if (response.ok) window.open(URL.createObjectURL(await response.blob()), "_blank");
}

async function downloadEvidence(id) {
  const headers = state.token ? {Authorization: `Bearer ${state.token}`} : {};
  const response = await fetch(`/api/incidents/${encodeURIComponent(id)}/evidence`, {headers});
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    $("#caseError").textContent = body.detail || `${response.status}`;
    return;
  }
  const blob = await response.blob();
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = `gshp-evidence-${id}.zip`;
  a.click();
}

/* ---------------------------------------------------------------- live stream (fetch, so the token can be sent) */

async function openStream(query, onEvent) {
  if (state.streamAbort) state.streamAbort.abort();
  const controller = new AbortController();
  state.streamAbort = controller;
  const headers = state.token ? {Authorization: `Bearer ${state.token}`} : {};
  try {
    const response = await fetch(`/api/stream?${query}`, {headers, signal: controller.signal});
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, {stream: true});
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const kind = (block.match(/^event: (.*)$/m) || [])[1] || "message";
        const data = (block.match(/^data: (.*)$/m) || [])[1];
        if (data) onEvent(kind, JSON.parse(data));
      }
    }
  } catch (err) {
    if (err.name !== "AbortError") setTimeout(() => { if (state.streamAbort === controller) openStream(query, onEvent); }, 3000);
  }
}

/* ---------------------------------------------------------------- routing */

async function route() {
  const view = ++state.view;
  const current = () => view === state.view;  // a page opened at / and sent on to a site routes twice at once
  clearInterval(state.timer);
  if (state.streamAbort) { state.streamAbort.abort(); state.streamAbort = null; }
  const match = location.hash.match(/^#\/sites\/(.+)$/);
  const incident = location.hash.match(/^#\/incidents\/(.+)$/);
  try {
    if (match) {
      await renderSite(decodeURIComponent(match[1]), current);
    } else if (incident) {
      await renderIncident(decodeURIComponent(incident[1]), current);
    } else if (location.hash === "#/map") {
      await renderMap(current);  // map.js
      if (current()) state.timer = setInterval(() => refreshMap(current).catch(() => {}), 10000);
    } else if (location.hash === "#/incidents") {
      await renderIncidents(current);
      if (current()) state.timer = setInterval(() => renderIncidents(current).catch(() => {}), 10000);
    } else {
      await renderOverview(current);
      if (current()) state.timer = setInterval(() => renderOverview(current).catch(() => {}), 5000);
    }
  } catch (err) {
    if (current() && err.message !== "unauthorized") $("#app").innerHTML = `<p class="error">${esc(err.message)}</p>`;
  }
}

async function start() {
  try {
    state.me = await api("/api/me");
  } catch (err) {
    if (err.message === "unauthorized") {
      askToken(state.token ? t("badToken") : "");
      return;
    }
    throw err;
  }
  state.tz = state.me.timezone || state.tz;
  const c = state.me.clock;
  state.clock = {kind: c.kind, speed: c.speed, now: Date.parse(c.now), at: Date.now()};
  if (state.district && state.me.districts && !state.me.districts.includes(state.district)) {
    state.district = "";  // chosen under another token: not this caller's (the API would refuse it)
    localStorage.removeItem("gshp.district");
  }
  $("#logout").hidden = !state.token;
  $("#loginBtn").hidden = Boolean(state.token);
  applyLang();
  tick();
  route();
}

window.addEventListener("hashchange", route);
setInterval(tick, 1000);
applyLang();
start();
