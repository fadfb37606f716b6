/* The dashboard's charts, drawn with Plotly from window.METEO_DASHBOARD (assets/data.js).
 *
 * The model holds per-day values for every station; this script only cuts the selected period out
 * of them and sums, averages or counts. Nothing is fetched: the page works from a folder on disk. */
(function () {
  "use strict";

  performance.mark("dashboard-script");  // Plotly and the data are parsed by now
  const M = window.METEO_DASHBOARD;
  const DAY_MS = 86400000;
  const FIRST_UTC = Date.parse(M.first_day + "T00:00:00Z");
  const DATES = Array.from({ length: M.days }, (_, i) => new Date(FIRST_UTC + i * DAY_MS).toISOString().slice(0, 10));
  const STATIONS = M.stations;
  const BY_KEY = Object.fromEntries(STATIONS.map((s) => [s.key, s]));
  const CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d"] };
  const FONT = { family: "system-ui, -apple-system, Segoe UI, Roboto, DejaVu Sans, sans-serif", size: 12, color: "#1f2933" };
  const LCZ_SYMBOLS = ["circle", "square", "diamond", "triangle-up", "pentagon", "hexagon", "star", "triangle-down",
    "hourglass", "cross", "x", "star-diamond", "bowtie", "circle-x", "square-x", "diamond-wide", "hexagram"];
  const TEMPERATURE_SCALE = [[0, "#313695"], [0.25, "#74add1"], [0.5, "#ffffbf"], [0.75, "#f46d43"], [1, "#a50026"]];
  const INDEX_SCALE = [[0, "#2166ac"], [0.25, "#92c5de"], [0.5, "#f7f7f7"], [0.75, "#f4a582"], [1, "#b2182b"]];
  const WIND_COLOURS = ["#c6dbef", "#6baed6", "#08519c"];
  const MIN_COVERAGE = M.min_coverage;
  const LAT0 = 43.6;

  const state = { start: dayIndex(M.default_period[0]), end: dayIndex(M.default_period[1]), station: null };

  // ------------------------------------------------------------------ period arithmetic
  function dayIndex(day) {
    return Math.round((Date.parse(day + "T00:00:00Z") - FIRST_UTC) / DAY_MS);
  }
  function clampIndex(i) {
    return Math.min(Math.max(i, 0), M.days - 1);
  }
  function period(values) {
    return values.slice(state.start, state.end + 1);
  }
  function present(values) {
    return values.filter((v) => v !== null);
  }
  function mean(values) {
    const known = present(values);
    return known.length ? known.reduce((a, b) => a + b, 0) / known.length : null;
  }
  function sum(values) {
    return present(values).reduce((a, b) => a + b, 0);
  }
  function round(value, decimals) {
    if (value === null) return null;
    const scale = Math.pow(10, decimals);
    return Math.round(value * scale) / scale;
  }
  function fmt(value, decimals, unit) {
    return value === null ? "–" : value.toFixed(decimals) + (unit ? "\u202f" + unit : "");
  }
  function lczOrder(s) {
    return s.lcz === null ? 99 : Number(s.lcz);
  }

  // ------------------------------------------------------------------ per-period figures
  function stationPeriod(s) {
    const series = M.series[s.key];
    const temperature = period(series.tmean);
    return {
      meanTemperature: mean(temperature),
      temperatureDays: present(temperature).length,
      meanIndex: mean(period(series.uhi)),
      completeDays: period(series.coverage).filter((c) => c !== null && c >= MIN_COVERAGE).length,
    };
  }

  function windTotals(s) {
    const totals = new Array(M.wind_rose.cells).fill(0);
    for (const day of period(M.wind[s.key])) {
      if (day === null) continue;
      for (let c = 0; c < day.length; c++) totals[c] += day[c];
    }
    return totals;
  }

  // ------------------------------------------------------------------ figures
  function baseLayout(extra) {
    return Object.assign({
      font: FONT, margin: { l: 52, r: 56, t: 28, b: 36 }, paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "#ffffff",
      hovermode: "x unified", legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom" }, height: 280,
      xaxis: { type: "date", range: [DATES[state.start] + " 00:00", DATES[state.end] + " 23:59"], gridcolor: "#eef1f4" },
      yaxis: { gridcolor: "#eef1f4", zeroline: false },
    }, extra);
  }

  function noData(layout, text) {
    layout.annotations = (layout.annotations || []).concat([{
      text: text, xref: "paper", yref: "paper", x: 0.5, y: 0.5, showarrow: false, font: { color: "#7f8c8d", size: 14 },
    }]);
    return layout;
  }

  function mapFigure() {
    const traces = M.outline.shapes.map((shape) => ({
      type: "scatter", mode: "lines", x: shape.lon, y: shape.lat, name: shape.name, hoverinfo: "skip", showlegend: false,
      fill: shape.kind === "area" ? "toself" : "none", fillcolor: "rgba(125,135,145,0.08)",
      line: shape.kind === "area" ? { color: "#8a939c", width: 1.5 } : { color: "#74a9cf", width: 3 },
    }));
    const located = STATIONS.filter((s) => s.lat !== null && s.lon !== null);
    const zones = [...new Set(located.map((s) => s.lcz))].sort((a, b) => lczOrder({ lcz: a }) - lczOrder({ lcz: b }));
    const symbol = (s) => LCZ_SYMBOLS[zones.indexOf(s.lcz) % LCZ_SYMBOLS.length];
    const figures = Object.fromEntries(located.map((s) => [s.key, stationPeriod(s)]));
    const hover = "<b>%{text}</b><br>%{customdata[1]}<br>mean %{customdata[2]} over %{customdata[3]} days<extra></extra>";
    const custom = (s) => [s.key, s.lcz_label, fmt(round(figures[s.key].meanTemperature, 2), 2, "°C"), figures[s.key].temperatureDays];
    for (const zone of zones) {
      const members = located.filter((s) => s.lcz === zone && figures[s.key].meanTemperature !== null);
      if (!members.length) continue;
      traces.push({
        type: "scatter", mode: "markers", name: members[0].lcz_label, x: members.map((s) => s.lon), y: members.map((s) => s.lat),
        text: members.map((s) => s.name), customdata: members.map(custom), hovertemplate: hover,
        marker: { symbol: symbol(members[0]), size: 14, color: members.map((s) => round(figures[s.key].meanTemperature, 2)),
          coloraxis: "coloraxis", line: { color: "#1f2933", width: 1 } },
      });
    }
    const silent = located.filter((s) => figures[s.key].meanTemperature === null);
    if (silent.length) {
      traces.push({
        type: "scatter", mode: "markers", name: "no temperature in the period", x: silent.map((s) => s.lon),
        y: silent.map((s) => s.lat), text: silent.map((s) => s.name), customdata: silent.map(custom), hovertemplate: hover,
        marker: { symbol: silent.map(symbol), size: 12, color: "#ffffff", line: { color: "#7f8c8d", width: 1.5 } },
      });
    }
    const chosen = BY_KEY[state.station];
    if (chosen && chosen.lat !== null) {
      traces.push({ type: "scatter", mode: "markers", x: [chosen.lon], y: [chosen.lat], hoverinfo: "skip", showlegend: false,
        name: "selected", marker: { size: 26, color: "rgba(0,0,0,0)", line: { color: "#b03a2e", width: 2.5 } } });
    }
    const lon = M.outline.shapes.flatMap((s) => s.lon).concat(located.map((s) => s.lon));
    const lat = M.outline.shapes.flatMap((s) => s.lat).concat(located.map((s) => s.lat));
    const layout = {
      font: FONT, height: 460, margin: { l: 8, r: 8, t: 8, b: 8 }, paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "#ffffff",
      hovermode: "closest", dragmode: "pan",
      xaxis: { visible: false, range: [Math.min(...lon) - 0.02, Math.max(...lon) + 0.02] },
      yaxis: { visible: false, range: [Math.min(...lat) - 0.01, Math.max(...lat) + 0.01], scaleanchor: "x",
        scaleratio: 1 / Math.cos(LAT0 * Math.PI / 180) },
      coloraxis: { colorscale: TEMPERATURE_SCALE, colorbar: { title: { text: "°C" }, thickness: 12, len: 0.6, x: 1, xanchor: "right" } },
      legend: { x: 0, y: 0, xanchor: "left", yanchor: "bottom", bgcolor: "rgba(255,255,255,0.8)", font: { size: 11 } },
      annotations: M.outline.labels.map((l) => ({ x: l.lon, y: l.lat, text: l.name, showarrow: false, yshift: 18,
        font: { color: "#5f6b7a", size: 11 } })),
    };
    if (!located.length) noData(layout, "no station positions: materialise the stations asset");
    return { data: traces, layout: layout };
  }

  function temperatureFigure(s) {
    const x = period(DATES), d = M.series[s.key];
    const line = (y, name, extra) => Object.assign({ type: "scatter", mode: "lines", x: x, y: period(y), name: name,
      hovertemplate: "%{y:.1f} °C" }, extra);
    const band = bandPolygon(x, period(d.tmin), period(d.tmax));
    const edge = { mode: "lines+markers", line: { width: 0.8, color: "rgba(217,83,79,0.7)" }, marker: { size: 3 } };
    const data = [
      { type: "scatter", mode: "lines", x: band.x, y: band.y, name: "min–max", fill: "toself", fillcolor: "rgba(217,83,79,0.2)",
        line: { width: 0 }, hoverinfo: "skip" },
      line(d.tmax, "max", Object.assign({ showlegend: false }, edge)),
      line(d.tmin, "min", Object.assign({ showlegend: false }, edge)),
      line(d.tmean, "mean", { line: { width: 2, color: "#b03a2e" }, hovertemplate: "%{y:.2f} °C" }),
      line(d.tn, "TN Météo-France", { mode: "markers", marker: { symbol: "triangle-down", size: 7, color: "#2166ac" } }),
      line(d.tx, "TX Météo-France", { mode: "markers", marker: { symbol: "triangle-up", size: 7, color: "#67001f" } }),
    ];
    const layout = baseLayout({ height: 320, yaxis: { title: { text: "°C" }, gridcolor: "#eef1f4" } });
    if (!present(period(d.tmean).concat(period(d.tmin))).length) noData(layout, "no temperature in this period");
    return { data: data, layout: layout };
  }

  // the min–max band as one closed shape per run of days with both values (a gap stays a gap)
  function bandPolygon(x, low, high) {
    const band = { x: [], y: [] };
    for (let i = 0; i < x.length; i++) {
      if (low[i] === null || high[i] === null) continue;
      let j = i;
      while (j + 1 < x.length && low[j + 1] !== null && high[j + 1] !== null) j++;
      for (let k = i; k <= j; k++) { band.x.push(x[k]); band.y.push(high[k]); }
      for (let k = j; k >= i; k--) { band.x.push(x[k]); band.y.push(low[k]); }
      band.x.push(null);
      band.y.push(null);
      i = j;
    }
    return band;
  }

  function rainFigure(s) {
    const x = period(DATES), rain = period(M.series[s.key].rain);
    let total = 0;
    const running = rain.map((v) => round((total += v === null ? 0 : v), 1));
    const data = [
      { type: "bar", x: x, y: rain, name: "rain of the day", marker: { color: "#6baed6" }, hovertemplate: "%{y:.1f} mm" },
      { type: "scatter", mode: "lines", x: x, y: running, name: "running total", yaxis: "y2", line: { color: "#08306b", width: 2 },
        hovertemplate: "%{y:.1f} mm" },
    ];
    const layout = baseLayout({
      yaxis: { title: { text: "mm / day" }, rangemode: "tozero", gridcolor: "#eef1f4" },
      yaxis2: { title: { text: "mm in the period" }, overlaying: "y", side: "right", rangemode: "tozero", showgrid: false,
        tickmode: "auto" },
    });
    if (!present(rain).length) noData(layout, "no rain data in this period");
    return { data: data, layout: layout };
  }

  function humidityPressureFigure(s) {
    const x = period(DATES), d = M.series[s.key];
    const data = [
      { type: "scatter", mode: "lines", x: x, y: period(d.humidity), name: "humidity", line: { color: "#1b9e77", width: 2 },
        hovertemplate: "%{y:.0f} %" },
      { type: "scatter", mode: "lines", x: x, y: period(d.pressure), name: "pressure", yaxis: "y2", line: { color: "#7570b3", width: 2 },
        hovertemplate: "%{y:.1f} hPa" },
    ];
    const layout = baseLayout({
      yaxis: { title: { text: "humidity %" }, gridcolor: "#eef1f4" },
      yaxis2: { title: { text: "pressure hPa" }, overlaying: "y", side: "right", showgrid: false, tickmode: "auto" },
    });
    if (!present(period(d.humidity).concat(period(d.pressure))).length) noData(layout, "no humidity or pressure in this period");
    return { data: data, layout: layout };
  }

  function windRoseFigure(s) {
    const totals = windTotals(s);
    const slots = totals.reduce((a, b) => a + b, 0);
    const sectors = M.wind_rose.sectors, n = sectors.length;
    const data = M.wind_rose.classes.map((label, c) => {
      const counts = sectors.map((_, k) => totals[1 + c * n + k]);
      return {
        type: "barpolar", name: label, theta: sectors, r: counts.map((k) => (slots ? round(100 * k / slots, 2) : 0)),
        customdata: counts, marker: { color: WIND_COLOURS[c % WIND_COLOURS.length], line: { color: "#ffffff", width: 0.5 } },
        hovertemplate: "%{theta} " + label + ": %{r:.1f} % (%{customdata} slots)<extra></extra>",
      };
    });
    const layout = {
      font: FONT, height: 340, margin: { l: 40, r: 40, t: 28, b: 44 }, paper_bgcolor: "rgba(0,0,0,0)",
      legend: { orientation: "h", x: 0, y: -0.08, yanchor: "top" },
      polar: { bargap: 0.05, angularaxis: { direction: "clockwise", rotation: 90 },
        radialaxis: { ticksuffix: " %", angle: 45, tickangle: 45, tickfont: { size: 9 }, showline: false } },
      annotations: [{ text: slots ? `calm ${fmt(round(100 * totals[0] / slots, 1), 1, "%")} of ${slots} observations` : "",
        xref: "paper", yref: "paper", x: 0, y: 1.08, showarrow: false, xanchor: "left", font: { color: "#5f6b7a", size: 11 } }],
    };
    if (!slots) noData(layout, "no wind data in this period");
    return { data: data, layout: layout };
  }

  function stationsGrid(field) {
    return STATIONS.map((s) => period(M.series[s.key][field]));
  }

  function heatmapLayout(rows, extra) {
    return baseLayout(Object.assign({ height: Math.max(240, 60 + 18 * rows), hovermode: "closest", margin: { l: 230, r: 20, t: 8, b: 36 },
      yaxis: { autorange: "reversed", automargin: true, tickfont: { size: 11 } } }, extra));
  }

  function uhiFigure() {
    const z = stationsGrid("uhi");
    const data = [{ type: "heatmap", x: period(DATES), y: STATIONS.map((s) => s.name), z: z, customdata: STATIONS.map((s) => s.key),
      colorscale: INDEX_SCALE, zmid: 0, hoverongaps: false, colorbar: { title: { text: "°C" }, thickness: 12 },
      hovertemplate: "%{y}<br>%{x}: %{z:+.2f} °C<extra></extra>" }];
    const layout = heatmapLayout(STATIONS.length);
    if (!present(z.flat()).length) noData(layout, "no daily mean temperature in this period");
    return { data: data, layout: layout };
  }

  function uhiByLczFigure() {
    const zones = new Map();
    for (const s of [...STATIONS].sort((a, b) => lczOrder(a) - lczOrder(b))) {
      const values = present(period(M.series[s.key].uhi));
      const zone = zones.get(s.lcz_label) || { values: [], stations: 0 };
      zone.values.push(...values);
      zone.stations += values.length ? 1 : 0;
      zones.set(s.lcz_label, zone);
    }
    const rows = [...zones.entries()].filter(([, z]) => z.values.length);
    const means = rows.map(([, z]) => round(mean(z.values), 3));
    const data = [{ type: "bar", x: rows.map(([label]) => label), y: means,
      customdata: rows.map(([, z]) => [z.values.length, z.stations]),
      text: means.map((m) => (m > 0 ? "+" : "") + m.toFixed(2)), textposition: "outside", cliponaxis: false,
      marker: { color: means, colorscale: INDEX_SCALE, cmid: 0, line: { color: "#1f2933", width: 0.5 } },
      hovertemplate: "%{x}<br>%{y:+.2f} °C over %{customdata[0]} station-days (%{customdata[1]} stations)<extra></extra>" }];
    const layout = baseLayout({ height: 300, hovermode: "closest", xaxis: { type: "category", automargin: true },
      yaxis: { title: { text: "°C vs network median" }, zeroline: true, zerolinecolor: "#5f6b7a", gridcolor: "#eef1f4" } });
    if (!rows.length) noData(layout, "no heat-island index in this period");
    return { data: data, layout: layout };
  }

  function coverageFigure() {
    const z = stationsGrid("coverage");
    const data = [{ type: "heatmap", x: period(DATES), y: STATIONS.map((s) => s.name), z: z, zmin: 0, zmax: 1, xgap: 1, ygap: 1,
      customdata: STATIONS.map((s) => s.key), hoverongaps: false,
      colorscale: [[0, "#67001f"], [Math.max(MIN_COVERAGE - 0.001, 0), "#f4a582"], [MIN_COVERAGE, "#a6dba0"], [1, "#1b7837"]],
      colorbar: { title: { text: "coverage" }, tickformat: ".0%", thickness: 12 },
      hovertemplate: "%{y}<br>%{x}: %{z:.1%} of the slots<extra></extra>" }];
    const layout = heatmapLayout(STATIONS.length, { plot_bgcolor: "#eef1f4" });
    if (!present(z.flat()).length) noData(layout, "no data in this period");
    return { data: data, layout: layout };
  }

  // ------------------------------------------------------------------ tables
  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  function fillTable(table, headers, rows) {
    table.replaceChildren();
    const head = table.createTHead().insertRow();
    for (const [text, numeric] of headers) {
      const th = document.createElement("th");
      th.textContent = text;
      if (numeric) th.className = "num";
      head.appendChild(th);
    }
    const body = table.createTBody();
    for (const row of rows) body.appendChild(row);
  }

  function stationsTable() {
    const rows = STATIONS.map((s) => {
      const f = stationPeriod(s);
      const tr = document.createElement("tr");
      tr.dataset.station = s.key;
      tr.className = s.key === state.station ? "selected" : "";
      const zone = cell(s.lcz_label.split(" ").slice(0, 2).join(" "));
      zone.title = s.lcz_label;
      tr.append(cell(s.name), zone, cell(fmt(round(f.meanTemperature, 2), 2, "°C"), "num"),
        cell(f.meanIndex === null ? "–" : (f.meanIndex > 0 ? "+" : "") + round(f.meanIndex, 2).toFixed(2), "num"),
        cell(`${f.completeDays}/${state.end - state.start + 1}`, "num"));
      tr.addEventListener("click", () => selectStation(s.key));
      return tr;
    });
    fillTable(document.getElementById("table-stations"),
      [["station"], ["zone"], ["mean", true], ["heat island", true], ["complete", true]], rows);
  }

  function freshnessTable() {
    const generated = Date.parse(M.generated_at);
    const rows = STATIONS.map((s) => {
      const tr = document.createElement("tr");
      tr.dataset.station = s.key;
      const badge = document.createElement("span");
      badge.className = "badge " + s.freshness;
      badge.textContent = s.freshness;
      const status = document.createElement("td");
      status.appendChild(badge);
      const last = s.last_observation ? s.last_observation.replace("T", " ") : "none in the dashboard's span";
      tr.append(cell(s.name), cell(s.key), cell(last), cell(s.last_observation ? age(generated - Date.parse(s.last_observation)) : "–", "num"), status);
      return tr;
    });
    fillTable(document.getElementById("table-freshness"),
      [["station"], ["key"], ["last observation (Paris)"], ["age", true], ["freshness"]], rows);
  }

  function age(ms) {
    const minutes = Math.max(0, Math.round(ms / 60000));
    if (minutes < 120) return `${minutes} min`;
    if (minutes < 48 * 60) return `${Math.round(minutes / 60)} h`;
    return `${Math.round(minutes / 1440)} days`;
  }

  function summaryTable(s) {
    const d = M.series[s.key];
    const tmin = present(period(d.tmin)), tmax = present(period(d.tmax)), f = stationPeriod(s);
    const rows = [
      ["mean temperature", fmt(round(f.meanTemperature, 2), 2, "°C")],
      ["lowest minimum", fmt(tmin.length ? Math.min(...tmin) : null, 1, "°C")],
      ["highest maximum", fmt(tmax.length ? Math.max(...tmax) : null, 1, "°C")],
      ["rain", fmt(round(sum(period(d.rain)), 1), 1, "mm")],
      ["mean humidity", fmt(round(mean(period(d.humidity)), 1), 1, "%")],
      ["heat-island index", fmt(round(f.meanIndex, 2), 2, "°C")],
      ["complete days", `${f.completeDays} of ${state.end - state.start + 1}`],
    ].map(([label, value]) => {
      const tr = document.createElement("tr");
      tr.append(cell(label), cell(value, "num"));
      return tr;
    });
    fillTable(document.getElementById("table-summary"), [["", false], ["", true]], rows);
  }

  // ------------------------------------------------------------------ rendering
  const CHARTS = {
    "chart-map": mapFigure,
    "chart-temperature": () => temperatureFigure(BY_KEY[state.station]),
    "chart-rain": () => rainFigure(BY_KEY[state.station]),
    "chart-humidity-pressure": () => humidityPressureFigure(BY_KEY[state.station]),
    "chart-wind-rose": () => windRoseFigure(BY_KEY[state.station]),
    "chart-uhi": uhiFigure,
    "chart-uhi-lcz": uhiByLczFigure,
    "chart-coverage": coverageFigure,
  };

  function render() {
    const s = BY_KEY[state.station];
    const label = `${DATES[state.start]} → ${DATES[state.end]} (${state.end - state.start + 1} days)`;
    document.querySelectorAll(".period").forEach((el) => { el.textContent = label; });
    document.getElementById("station-name").textContent = s.name;
    document.getElementById("station-facts").textContent = [s.key, s.commune, s.lcz_label,
      s.lat !== null ? `${s.lat.toFixed(4)}° N, ${s.lon.toFixed(4)}° E` : "position unknown"].filter(Boolean).join(" · ");
    document.getElementById("start").value = DATES[state.start];
    document.getElementById("end").value = DATES[state.end];
    document.getElementById("station").value = s.key;
    stationsTable();
    summaryTable(s);
    return Promise.all(Object.entries(CHARTS).map(([id, figure]) => {
      const f = figure();
      return Plotly.react(id, f.data, f.layout, CONFIG);
    })).then(() => {
      document.body.dataset.rendered = `${s.key} ${DATES[state.start]} ${DATES[state.end]}`;
    });
  }

  function selectStation(key) {
    state.station = key;
    return render();
  }

  function setPeriod(start, end) {
    start = clampIndex(start);
    end = clampIndex(end);
    [state.start, state.end] = start <= end ? [start, end] : [end, start];
    return render();
  }

  function defaultStation() {
    const withData = STATIONS.find((s) => present(period(M.series[s.key].tmean)).length);
    return (withData || STATIONS[0]).key;
  }

  function setUp() {
    const select = document.getElementById("station");
    for (const s of STATIONS) select.add(new Option(`${s.name} (${s.lcz_label})`, s.key));
    select.addEventListener("change", () => selectStation(select.value));
    const start = document.getElementById("start"), end = document.getElementById("end");
    const fromInputs = () => { if (start.value && end.value) setPeriod(dayIndex(start.value), dayIndex(end.value)); };
    start.addEventListener("change", fromInputs);
    end.addEventListener("change", fromInputs);
    document.querySelectorAll(".quick button").forEach((button) => button.addEventListener("click", () => {
      const days = button.dataset.days;
      setPeriod(days === "all" ? 0 : state.end - Number(days) + 1, state.end);
    }));
    document.getElementById("chart-map").on("plotly_click", (event) => {
      const key = event.points[0] && event.points[0].customdata && event.points[0].customdata[0];
      if (BY_KEY[key]) selectStation(key);
    });
    freshnessTable();
  }

  function fail(error) {
    const box = document.getElementById("error");
    box.hidden = false;
    box.textContent = "The dashboard could not be drawn: " + error;
    console.error(error);
  }

  try {
    if (!STATIONS.length) throw new Error("no station in the data");
    state.station = defaultStation();
    render().then(() => {
      setUp();
      performance.mark("dashboard-rendered");
    }).catch(fail);
    window.meteoDashboard = { state: state, selectStation: selectStation, setPeriod: setPeriod, dayIndex: dayIndex };
  } catch (error) {
    fail(error);
  }
})();
