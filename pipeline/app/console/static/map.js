// citywatch console: the camera map (Leaflet, vendored). Works offline: without a tile URL it draws a
// coordinate grid and district outlines built from the camera registry; tiles only when configured.
"use strict";

const cameraMap = {
  map: null, base: null, markers: null, key: "", fitted: false,

  init(meta) {
    if (this.map || typeof L === "undefined") return;
    this.map = L.map("map", { zoomSnap: 0.5, attributionControl: !!meta.tile_url, worldCopyJump: false });
    if (meta.tile_url) {
      L.tileLayer(meta.tile_url, { attribution: meta.attribution || "", maxZoom: 19, className: "tile" }).addTo(this.map);
    }
    this.base = L.layerGroup().addTo(this.map);
    this.markers = L.layerGroup().addTo(this.map);
    this.tiles = !!meta.tile_url;
  },

  // grid and district outlines: drawn again only when the set of camera positions changes
  drawBase(cams) {
    const key = cams.map((c) => `${c.id}:${c.lat}:${c.lon}:${c.district}`).join("|");
    if (key === this.key) return;
    this.key = key;
    this.base.clearLayers();
    const lats = cams.map((c) => c.lat), lons = cams.map((c) => c.lon);
    const pad = 0.01 + 0.2 * Math.max(Math.max(...lats) - Math.min(...lats), Math.max(...lons) - Math.min(...lons));
    const south = Math.min(...lats) - pad, north = Math.max(...lats) + pad;
    const west = Math.min(...lons) - pad, east = Math.max(...lons) + pad;
    if (!this.tiles) {
      const step = gridStep(north - south);
      for (let lat = Math.ceil(south / step) * step; lat <= north; lat += step)
        L.polyline([[lat, west], [lat, east]], { className: "grid-line", interactive: false }).addTo(this.base);
      for (let lon = Math.ceil(west / step) * step; lon <= east; lon += step)
        L.polyline([[south, lon], [north, lon]], { className: "grid-line", interactive: false }).addTo(this.base);
    }
    const byDistrict = new Map();
    for (const c of cams) if (c.district) (byDistrict.get(c.district) || byDistrict.set(c.district, []).get(c.district)).push([c.lat, c.lon]);
    for (const [name, pts] of byDistrict) {
      const outline = hull(pts);
      const shape = outline.length >= 3
        ? L.polygon(outline, { className: "district", interactive: false })
        : L.circle(centroid(pts), { radius: 350 + Math.max(0, ...pts.map((p) => this.map.distance(p, centroid(pts)))),
          className: "district", interactive: false });
      shape.addTo(this.base);
      L.tooltip({ permanent: true, direction: "center", offset: [0, -24], className: "district-label", interactive: false })
        .setLatLng(centroid(pts)).setContent(name.toUpperCase()).addTo(this.base);
    }
    if (!this.fitted) { this.map.fitBounds([[south, west], [north, east]]); this.fitted = true; }
  },

  render(cameras, incidents, healthOf, onPick) {
    if (!this.map) return;
    const cams = cameras.filter((c) => typeof c.lat === "number" && typeof c.lon === "number");
    $("map-note").hidden = cams.length > 0;
    if (!cams.length) return;
    this.drawBase(cams);
    const worst = new Map();
    for (const i of incidents) if (i.state !== "end") worst.set(i.camera_id, Math.max(worst.get(i.camera_id) || 0, rankOf(i)));
    this.markers.clearLayers();
    for (const c of cams) {
      const sev = worst.get(c.id), h = healthOf(c);
      if (sev) L.circleMarker([c.lat, c.lon], { radius: 15, className: `halo sev-${Object.keys(SEVERITY_RANK)[sev - 1]}`,
        interactive: false }).addTo(this.markers);
      const dot = L.circleMarker([c.lat, c.lon], { radius: 7, className: `cam-dot ${h.state}`, weight: 2 });
      dot.bindTooltip(`${c.name} · ${h.label}${sev ? " · " + t("map.open_incident") : ""}`, { direction: "top" });
      dot.on("click", () => onPick(c));
      dot.addTo(this.markers);
      dot.getElement().setAttribute("data-camera", c.id);
    }
  },
};

function gridStep(span) {
  for (const s of [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]) if (span / s <= 12) return s;
  return 10;
}

function centroid(pts) {
  return [pts.reduce((s, p) => s + p[0], 0) / pts.length, pts.reduce((s, p) => s + p[1], 0) / pts.length];
}

// convex hull (monotone chain) of [lat, lon] points, pushed out a little so the cameras sit inside it
function hull(pts) {
  const p = [...new Map(pts.map((q) => [q.join(","), q])).values()].sort((a, b) => a[1] - b[1] || a[0] - b[0]);
  if (p.length < 3) return p;
  const cross = (o, a, b) => (a[1] - o[1]) * (b[0] - o[0]) - (a[0] - o[0]) * (b[1] - o[1]);
  const lower = [], upper = [];
  for (const q of p) { while (lower.length >= 2 && cross(lower[lower.length - 2], lower[lower.length - 1], q) <= 0) lower.pop(); lower.push(q); }
  for (const q of [...p].reverse()) { while (upper.length >= 2 && cross(upper[upper.length - 2], upper[upper.length - 1], q) <= 0) upper.pop(); upper.push(q); }
  const ring = lower.slice(0, -1).concat(upper.slice(0, -1));
  if (ring.length < 3) return ring;
  const [cy, cx] = centroid(ring);
  return ring.map(([y, x]) => [cy + (y - cy) * 1.25 + Math.sign(y - cy) * 0.002, cx + (x - cx) * 1.25 + Math.sign(x - cx) * 0.002]);
}
