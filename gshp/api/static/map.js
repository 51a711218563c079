/* gshp-monitor live board: the map view (#/map). Every site a point coloured by its status, named, over the
   district outlines of the config (and a tile layer where the config sets one), drawn by the vendored Leaflet
   (vendor/leaflet, 1.9.4): nothing is loaded from outside the service. Loaded before board.js, whose route()
   calls renderMap / refreshMap and whose helpers (api, t, esc, state) these functions use when called. */
"use strict";

const MAP_I18N = {
  zh: {map: "地图", mapTitle: "站点分布图", unplaced: "未标注位置的站点", noSites: "没有站点"},
  en: {map: "Map", mapTitle: "Sites on the map", unplaced: "Sites without a location", noSites: "No sites"},
};

/* The badge colours of board.css, for the points. */
const STATUS_COLORS = {normal: "#2e7d32", discharge: "#c62828", fault: "#ef6c00", offline: "#757575",
                       unknown: "#757575"};
const CHINA = [[18, 73], [54, 135]];  // the view without any point or outline

const mapView = {map: null, markers: new Map()};

window.addEventListener("DOMContentLoaded", () => {
  Object.assign(I18N.zh, MAP_I18N.zh);
  Object.assign(I18N.en, MAP_I18N.en);
  applyLang();
});

const statusColor = (status) => STATUS_COLORS[status] || STATUS_COLORS.unknown;

function mapQuery() {
  return state.district ? `?district=${encodeURIComponent(state.district)}` : "";
}

/* The header's district picker knows every district of the caller, whichever view opened first. */
function knowDistricts(districts) {
  const select = $("#district");
  const known = new Set([...select.options].map((o) => o.value));
  for (const d of districts) if (!known.has(d)) select.add(new Option(d, d));
  select.value = state.district;
}

async function renderMap(current = () => true) {
  const data = await api(`/api/map${mapQuery()}`);
  if (!current()) return;
  if (mapView.map) mapView.map.remove();
  mapView.markers = new Map();
  knowDistricts(data.districts);
  const options = [`<option value="">${esc(t("allDistricts"))}</option>`, ...data.districts.map((d) =>
    `<option value="${esc(d)}"${d === state.district ? " selected" : ""}>${esc(d)}</option>`)].join("");
  const legend = ["normal", "discharge", "fault", "offline"].map((s) =>
    `<span><i style="background:${statusColor(s)}"></i>${esc(t(s))}</span>`).join("");
  const unplaced = data.sites.filter((s) => !s.location);
  $("#app").innerHTML = `
    <h2>${t("mapTitle")}</h2>
    <div class="mapbar">
      <label>${t("district")} <select id="mapDistrict">${options}</select></label>
      <span class="maplegend">${legend}</span>
    </div>
    <div id="citymap" class="citymap"></div>
    ${unplaced.length ? `<h3>${t("unplaced")}</h3><ul id="unplaced">${unplaced.map((s) =>
      `<li><a href="#/sites/${encodeURIComponent(s.id)}">${esc(s.name)}</a> · ${esc(s.district)} ${badge(s.status)}</li>`).join("")}</ul>` : ""}
    ${data.sites.length ? "" : `<p class="muted">${t("noSites")}</p>`}`;
  $("#mapDistrict").addEventListener("change", (e) => {
    state.district = e.target.value;
    localStorage.setItem("gshp.district", state.district);
    $("#district").value = state.district;
    route();
  });
  const map = L.map("citymap", {attributionControl: Boolean(data.tiles), zoomSnap: 0.25});
  mapView.map = map;
  if (data.tiles) {
    L.tileLayer(data.tiles.url, {key: data.tiles.key || "", subdomains: data.tiles.subdomains || "abc",
                                 attribution: esc(data.tiles.attribution), maxZoom: data.tiles.max_zoom}).addTo(map);
  }
  const layers = [];
  if (data.outlines && data.outlines.features.length) {
    layers.push(L.geoJSON(data.outlines, {
      style: {color: "#0d3b66", weight: 1.5, fillColor: "#0d3b66", fillOpacity: 0.06, className: "district-outline"},
      onEachFeature: (feature, layer) => layer.bindTooltip(esc(feature.properties.district), {sticky: true}),
    }));
  }
  const placed = data.sites.filter((s) => s.location);
  const points = placed.map((site) => L.circleMarker([site.location.lat, site.location.lon], {
    radius: 9, color: "#fff", weight: 2, fillColor: statusColor(site.status), fillOpacity: 0.95,
    className: "site-marker",
  }));
  // the view first: Leaflet adds layers to a map once it has one
  const bounds = layers.length || points.length ? L.featureGroup([...layers, ...points]).getBounds() : null;
  if (bounds && bounds.isValid()) {
    map.fitBounds(bounds, {padding: [24, 24], maxZoom: 15});
  } else {
    map.fitBounds(CHINA);
  }
  layers.forEach((layer) => layer.addTo(map));
  placed.forEach((site, i) => {
    const marker = points[i].addTo(map);
    marker.bindTooltip(esc(site.name), {permanent: true, direction: "right", offset: [10, 0], className: "site-label"});
    marker.on("click", () => { location.hash = `#/sites/${encodeURIComponent(site.id)}`; });
    const path = marker.getElement();
    path.dataset.site = site.id;
    path.dataset.status = site.status;
    path.setAttribute("aria-label", `${site.name}: ${t(site.status)}`);
    mapView.markers.set(site.id, marker);
  });
}

/* New statuses on the points in place: the view keeps its zoom and position. */
async function refreshMap(current = () => true) {
  const data = await api(`/api/map${mapQuery()}`);
  if (!current()) return;
  for (const site of data.sites) {
    const marker = mapView.markers.get(site.id);
    if (!marker) continue;
    marker.setStyle({fillColor: statusColor(site.status)});
    const path = marker.getElement();
    path.dataset.status = site.status;
    path.setAttribute("aria-label", `${site.name}: ${t(site.status)}`);
  }
}
