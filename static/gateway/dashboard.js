/* Staff dashboard: polls data.json every few seconds and redraws in place.
 * Charts are plain inline SVG (no library, no CDN: the page works offline). */
(function () {
  "use strict";

  const root = document.getElementById("dashboard");
  if (!root) return;

  const SOURCE = root.dataset.source;
  const POLL_MS = Number(root.dataset.pollSeconds || 2) * 1000;
  const HISTORY_SECONDS = 15 * 60;
  const TIME_TICK_SECONDS = 5 * 60;
  const CHART_HEIGHT = 150;
  const MARGIN = { top: 10, right: 10, bottom: 22, left: 46 };
  const SVG_NS = "http://www.w3.org/2000/svg";
  const NBSP = "\u00a0";

  const CHARTS = {
    traffic: {
      label: "Traffic per second",
      empty: "No traffic yet",
      minMax: 1,
      format: formatRate,
      series: [
        { key: "rps", label: "Requests", cls: "requests", area: true },
        { key: "errors_per_s", label: "5xx", cls: "errors" },
        { key: "client_errors_per_s", label: "4xx", cls: "client-errors" },
      ],
    },
    latency: {
      label: "p95 latency",
      empty: "No requests yet",
      minMax: 0.01,
      format: formatSeconds,
      series: [{ key: "p95", label: "p95", cls: "latency", area: true }],
    },
  };

  let latest = null;
  let timer = null;
  let inFlight = false;

  // --- small DOM builders (textContent only: names and reasons are never parsed as HTML) ---

  function h(tag, attrs, children) {
    const node = document.createElement(tag);
    setAttributes(node, attrs);
    for (const child of [].concat(children ?? [])) {
      if (child !== null && child !== undefined && child !== false) node.append(child);
    }
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    setAttributes(node, attrs);
    return node;
  }

  function setAttributes(node, attrs) {
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "text") node.textContent = value;
      else node.setAttribute(name, value);
    }
  }

  function pill(kind, text, extra) {
    return h("span", { class: `pill pill-${kind}`, text: text ?? kind, ...extra });
  }

  // --- formatting ---------------------------------------------------------------------------

  function formatRate(value) {
    if (value === null || value === undefined) return "–";
    const digits = value >= 100 ? 0 : value >= 10 ? 1 : 2;
    return String(+value.toFixed(digits));
  }

  function formatSeconds(value) {
    if (value === null || value === undefined) return "–";
    if (value >= 1) return `${+value.toFixed(1)}${NBSP}s`;
    const ms = value * 1000;
    return `${ms >= 10 ? ms.toFixed(0) : +ms.toFixed(1)}${NBSP}ms`;
  }

  function clockTime(epochSeconds, withSeconds) {
    const options = { hour: "2-digit", minute: "2-digit", hour12: false };
    if (withSeconds) options.second = "2-digit";
    return new Date(epochSeconds * 1000).toLocaleTimeString([], options);
  }

  function ago(seconds) {
    if (seconds < 1) return "just now";
    if (seconds < 60) return `${Math.round(seconds)}${NBSP}s ago`;
    if (seconds < 3600) return `${Math.round(seconds / 60)}${NBSP}min ago`;
    if (seconds < 86400) return `${Math.round(seconds / 3600)}${NBSP}h ago`;
    return `${Math.round(seconds / 86400)}${NBSP}d ago`;
  }

  function plural(count, word) {
    return `${count} ${word}${count === 1 ? "" : "s"}`;
  }

  // --- summary, tenants ---------------------------------------------------------------------

  function field(name) {
    return root.querySelector(`[data-field="${name}"]`);
  }

  function renderSummary(data) {
    const summary = data.summary;
    field("healthy").textContent = summary.by_status.healthy;
    field("services").textContent = summary.services;
    field("status-counts").replaceChildren(
      ...Object.entries(summary.by_status)
        .filter(([status, count]) => count && status !== "healthy")
        .map(([status, count]) => pill(status, `${count} ${status}`)),
    );
    field("rps").textContent = formatRate(summary.rps);
    field("errors").textContent = formatRate(summary.errors_per_s);
    field("client-errors").textContent = formatRate(summary.client_errors_per_s);
    root.querySelector('[data-testid="config-version"]').textContent = data.config_version ?? "–";
    root.querySelector('[data-testid="sse-connections"]').textContent = data.sse_connections;
    renderConfigSync(data);
  }

  function renderConfigSync(data) {
    const note = field("config-sync");
    const database = data.database_config_version;
    if (database === null || database === undefined) {
      note.replaceChildren(pill("degraded", "database unreachable"));
    } else if (database === data.config_version) {
      note.replaceChildren(pill("healthy", "in sync"), ` with database v${database}`);
    } else {
      note.replaceChildren(pill("degraded", "catching up"), ` database is v${database}`);
    }
  }

  function renderConfigStale(data) {
    const banner = root.querySelector('[data-testid="config-stale"]');
    if (!banner) return;
    banner.hidden = !data.config_stale;
    banner.querySelector('[data-testid="config-error"]').textContent = data.config_error || "";
  }

  function renderTenants(data) {
    const tenants = data.read_only_tenants;
    field("tenant-count").textContent = tenants.length;
    const items = tenants.map((tenant) =>
      h("li", { class: "tenant", "data-testid": "read-only-tenant", "data-tenant": tenant.slug }, [
        pill("readonly", "read-only"), " ",
        h("strong", { text: tenant.name }), " ",
        h("code", { text: tenant.slug }), " ",
        h("span", { class: "reason", text: tenant.reason || "no reason given" }),
      ]),
    );
    if (!items.length) items.push(h("li", { class: "empty", text: "None: every tenant can write." }));
    field("tenant-list").replaceChildren(...items);
  }

  // --- services -----------------------------------------------------------------------------

  function renderServices(data) {
    const container = root.querySelector('[data-testid="services"]');
    const existing = new Map(
      [...container.querySelectorAll('[data-testid="service-card"]')].map((c) => [c.dataset.service, c]),
    );
    const timeline = timelineOf(data);
    const cards = data.services.map((service) => {
      const card = existing.get(service.slug) || newServiceCard(service.slug);
      updateServiceCard(card, service, data, timeline);
      return card;
    });
    if (!cards.length) {
      cards.push(h("p", { class: "card empty", "data-testid": "no-services", text: "No service is registered yet." }));
    }
    // Only re-attach when the order or membership changed, so hover and focus survive.
    const current = [...container.children];
    if (current.length !== cards.length || current.some((node, i) => node !== cards[i])) {
      container.replaceChildren(...cards);
    }
    redrawCharts(data, timeline);
  }

  function newServiceCard(slug) {
    const figure = (kind) =>
      h("figure", { class: "chart", "data-testid": `chart-${kind}`, "data-chart": kind }, [
        h("figcaption", {}, [h("span", { text: CHARTS[kind].label }), h("span", { class: "chart-when" })]),
        h("div", { class: "chart-body" }),
      ]);
    return h("article", { class: "card service", "data-testid": "service-card", "data-service": slug }, [
      h("header", { class: "service-head" }),
      h("p", { class: "service-meta" }),
      h("div", { class: "charts" }, [figure("traffic"), figure("latency")]),
      h("table", { class: "targets", "data-testid": "targets" }, [
        h("thead", {}, h("tr", {}, [
          h("th", { text: "Target" }), h("th", { text: "Health" }), h("th", { text: "Circuit breaker" }),
        ])),
        h("tbody"),
      ]),
    ]);
  }

  function updateServiceCard(card, service, data, timeline) {
    card.className = `card service status-${service.status}`;
    card.querySelector(".service-head").replaceChildren(
      h("div", { class: "service-title" }, [
        h("h2", { "data-testid": "service-name", text: service.name }),
        h("code", { "data-testid": "service-prefix", text: service.prefix }),
      ]),
      h("div", { class: "service-pills" }, [
        service.enabled ? null : pill("disabled", "switched off"),
        pill(service.status, service.status, { "data-testid": "service-status" }),
      ]),
    );
    card.querySelector(".service-meta").textContent =
      `${service.healthy_targets} of ${plural(service.serving_targets, "serving target")} healthy`;
    const now = Date.parse(data.generated_at) / 1000;
    const rows = service.targets.map((target) => targetRow(target, now));
    if (!rows.length) rows.push(h("tr", {}, h("td", { colspan: 3, class: "empty", text: "No target registered." })));
    card.querySelector("tbody").replaceChildren(...rows);
  }

  function targetRow(target, now) {
    return h("tr", { "data-testid": "target-row", "data-target-id": target.id }, [
      h("td", { class: "target" }, [
        h("span", { class: "url", "data-testid": "target-url", text: target.url }),
        h("span", { class: "detail", text: `#${target.id} · weight ${target.weight}` }),
      ]),
      h("td", {}, [healthPill(target), " ", lastCheck(target.last_check, now)]),
      h("td", {}, breakerCell(target.circuit_breaker)),
    ]);
  }

  function healthPill(target) {
    if (!target.enabled) return pill("disabled", "disabled");
    return target.healthy ? pill("healthy", "healthy") : pill("unhealthy", "unhealthy");
  }

  function lastCheck(check, now) {
    if (!check) return h("span", { class: "detail", text: "not checked yet" });
    const at = Date.parse(check.at) / 1000;
    const parts = [check.status_code ?? (check.error || "no answer")];
    if (check.latency_ms !== null && check.latency_ms !== undefined) parts.push(`${Math.round(check.latency_ms)}${NBSP}ms`);
    parts.push(ago(Math.max(0, now - at)));
    return h("span", { class: "detail", title: `Last health check ${check.at}`, text: parts.join(" · ") });
  }

  function breakerCell(breaker) {
    if (!breaker) {
      return [pill("unknown", "unknown", { "data-testid": "breaker-state" }), " ",
        h("span", { class: "detail", text: "no data plane here" })];
    }
    const detail = [plural(breaker.failure_count, "failure")];
    if (breaker.time_until_retry > 0) detail.push(`retry in ${Math.ceil(breaker.time_until_retry)}${NBSP}s`);
    return [
      pill(breaker.state, breaker.state, { "data-testid": "breaker-state", "data-state": breaker.state }),
      " ", h("span", { class: "detail", text: detail.join(" · ") }),
    ];
  }

  // --- charts -------------------------------------------------------------------------------

  function timelineOf(data) {
    const bucket = data.traffic.bucket_seconds;
    const end = data.traffic.current_bucket
      ? data.traffic.current_bucket.t
      : Math.floor(Date.parse(data.generated_at) / 1000 / bucket) * bucket;
    const count = HISTORY_SECONDS / bucket;
    return Array.from({ length: count }, (_, i) => end - (count - 1 - i) * bucket);
  }

  function redrawCharts(data, timeline) {
    for (const card of root.querySelectorAll('[data-testid="service-card"]')) {
      const points = data.traffic.services[card.dataset.service] || [];
      const byTime = new Map(points.map((p) => [p.t, p]));
      const aligned = timeline.map((t) => byTime.get(t) || { t, rps: 0, errors_per_s: 0, client_errors_per_s: 0, p95: null });
      for (const figure of card.querySelectorAll("figure.chart")) {
        drawChart(figure, aligned, CHARTS[figure.dataset.chart]);
      }
    }
  }

  function niceCeiling(value) {
    const power = 10 ** Math.floor(Math.log10(value));
    const step = [1, 2, 2.5, 5, 10].find((m) => m * power >= value - 1e-12);
    return step * power;
  }

  function drawChart(figure, points, spec) {
    const body = figure.querySelector(".chart-body");
    const width = Math.max(220, Math.floor(body.clientWidth || 280));
    const plotW = width - MARGIN.left - MARGIN.right;
    const plotH = CHART_HEIGHT - MARGIN.top - MARGIN.bottom;
    const values = points.flatMap((p) => spec.series.map((s) => p[s.key])).filter((v) => v !== null && v !== undefined);
    const hasData = values.some((v) => v > 0);
    const top = niceCeiling(Math.max(spec.minMax, ...values));
    const x = (i) => MARGIN.left + (points.length > 1 ? (i * plotW) / (points.length - 1) : plotW);
    const y = (v) => MARGIN.top + plotH - (v / top) * plotH;

    const chart = svg("svg", {
      width, height: CHART_HEIGHT, viewBox: `0 0 ${width} ${CHART_HEIGHT}`, role: "img",
      "aria-label": `${spec.label}, last 15 minutes`, class: "chart-svg",
    });
    drawAxes(chart, points, spec, { top, x, y, plotW, width });
    if (hasData) {
      for (const series of spec.series) drawSeries(chart, points, series, x, y);
    } else {
      chart.append(svg("text", {
        x: MARGIN.left + plotW / 2, y: MARGIN.top + plotH / 2 + 4, class: "chart-empty",
        "text-anchor": "middle", "data-testid": "chart-empty", text: spec.empty,
      }));
    }
    const legend = h("div", { class: "legend" });
    figure.dataset.empty = hasData ? "false" : "true";
    body.replaceChildren(legend, chart);
    attachHover(figure, chart, legend, points, spec, { x, plotW, plotH });
  }

  function drawAxes(chart, points, spec, geometry) {
    const { top, x, y, width } = geometry;
    for (const value of [0, top / 2, top]) {
      chart.append(svg("line", { x1: MARGIN.left, x2: width - MARGIN.right, y1: y(value), y2: y(value), class: value ? "grid" : "axis" }));
      chart.append(svg("text", { x: MARGIN.left - 6, y: y(value) + 4, "text-anchor": "end", class: "tick", text: spec.format(value) }));
    }
    points.forEach((point, i) => {
      if (point.t % TIME_TICK_SECONDS !== 0) return;
      chart.append(svg("line", { x1: x(i), x2: x(i), y1: MARGIN.top, y2: y(0), class: "grid grid-time" }));
      chart.append(svg("text", { x: x(i), y: CHART_HEIGHT - 6, "text-anchor": "middle", class: "tick", text: clockTime(point.t) }));
    });
  }

  function drawSeries(chart, points, series, x, y) {
    const segments = [];
    let current = [];
    points.forEach((point, i) => {
      const value = point[series.key];
      if (value === null || value === undefined) {
        if (current.length) segments.push(current);
        current = [];
      } else {
        current.push([x(i), y(value)]);
      }
    });
    if (current.length) segments.push(current);
    const drawn = segments.reduce((n, s) => n + s.length, 0);
    const line = segments.map((s) => s.map(([px, py], i) => `${i ? "L" : "M"}${px.toFixed(1)},${py.toFixed(1)}`).join("")).join("");
    if (series.area) {
      const base = y(0).toFixed(1);
      const area = segments
        .map((s) => `M${s[0][0].toFixed(1)},${base}` + s.map(([px, py]) => `L${px.toFixed(1)},${py.toFixed(1)}`).join("") + `L${s[s.length - 1][0].toFixed(1)},${base}Z`)
        .join("");
      chart.append(svg("path", { d: area, class: `area area-${series.cls}` }));
    }
    chart.append(svg("path", { d: line, class: `line line-${series.cls}`, "data-series": series.key, "data-points": drawn }));
    // A lone point between gaps draws no line: mark it so a single bucket stays visible.
    for (const s of segments.filter((s) => s.length === 1)) {
      chart.append(svg("circle", { cx: s[0][0], cy: s[0][1], r: 2.5, class: `dot dot-${series.cls}` }));
    }
  }

  function attachHover(figure, chart, legend, points, spec, geometry) {
    const { x, plotW, plotH } = geometry;
    const cursor = svg("line", { y1: MARGIN.top, y2: MARGIN.top + plotH, class: "cursor", visibility: "hidden" });
    const overlay = svg("rect", { x: MARGIN.left, y: MARGIN.top, width: plotW, height: plotH, class: "overlay" });
    chart.append(cursor, overlay);
    const show = (index) => {
      figure.dataset.hover = index === null ? "" : String(index);
      const at = index === null ? points.length - 1 : index;
      cursor.setAttribute("visibility", index === null ? "hidden" : "visible");
      cursor.setAttribute("x1", x(at));
      cursor.setAttribute("x2", x(at));
      renderLegend(legend, points[at], spec);
      figure.querySelector(".chart-when").textContent = index === null ? "now" : `at ${clockTime(points[at].t, true)}`;
    };
    overlay.addEventListener("mousemove", (event) => {
      const box = chart.getBoundingClientRect();
      const ratio = (event.clientX - box.left - MARGIN.left) / plotW;
      show(Math.min(points.length - 1, Math.max(0, Math.round(ratio * (points.length - 1)))));
    });
    overlay.addEventListener("mouseleave", () => show(null));
    const kept = figure.dataset.hover;
    show(kept ? Math.min(points.length - 1, Number(kept)) : null);
  }

  function renderLegend(legend, point, spec) {
    legend.replaceChildren(
      ...spec.series.map((series) =>
        h("span", { class: "legend-item" }, [
          h("span", { class: `swatch swatch-${series.cls}`, "aria-hidden": "true" }),
          `${series.label} `,
          h("strong", { text: point ? spec.format(point[series.key]) : "–" }),
        ]),
      ),
    );
  }

  // --- polling ------------------------------------------------------------------------------

  function render(data) {
    latest = data;
    renderSummary(data);
    renderConfigStale(data);
    renderTenants(data);
    renderServices(data);
  }

  function setLive(state, text) {
    const status = root.querySelector('[data-testid="live-status"]');
    status.dataset.state = state;
    status.querySelector(".live-text").textContent = text;
  }

  async function poll() {
    if (inFlight) return;
    inFlight = true;
    try {
      const response = await fetch(SOURCE, { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } });
      if (response.status === 401 || response.status === 403) {
        setLive("error", "Session ended: log in again");
        return;
      }
      if (!response.ok) {
        setLive("error", `Update failed (HTTP ${response.status}), retrying`);
        return;
      }
      render(await response.json());
      setLive("live", `Live · updated ${clockTime(Date.parse(latest.generated_at) / 1000, true)}`);
    } catch (error) {
      setLive("error", "Gateway unreachable, retrying");
    } finally {
      inFlight = false;
    }
  }

  function start() {
    if (timer !== null) return;
    poll();
    timer = setInterval(poll, POLL_MS);
  }

  function stop() {
    clearInterval(timer);
    timer = null;
    setLive("paused", "Paused while this tab is hidden");
  }

  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => latest && redrawCharts(latest, timelineOf(latest)), 150);
  });
  document.addEventListener("visibilitychange", () => (document.hidden ? stop() : start()));

  const initial = document.getElementById("dashboard-initial");
  if (initial) render(JSON.parse(initial.textContent));
  if (!document.hidden) start();
})();
