/* The marketing dashboard: reads the /v1 views, draws them with Chart.js, refreshes live. */
"use strict";

(() => {
  // Which attribution models exist is the API's to say (attributionModels); only the titles
  // that are more than the name written out live here.
  const MODEL_TITLES = { position_based: "Position based (40/20/40)", markov: "Markov chain", shapley: "Shapley value" };
  const modelTitle = (model) => MODEL_TITLES[model] ?? model.charAt(0).toUpperCase() + model.slice(1).replaceAll("_", " ");
  const BUCKETS = {
    same_day: "Same day", "1-7d": "1–7 days", "8-30d": "8–30 days",
    "31-90d": "1–3 months", "91-365d": "3–12 months", ">1y": "Over a year",
  };
  const BUCKET_COLORS = ["#c7d2fe", "#a5b4fc", "#818cf8", "#6366f1", "#4338ca", "#312e81"];
  const CHANNEL_COLORS = {
    instagram: "#d6249f", facebook: "#1877f2", tiktok: "#0f172a", google_ads: "#f4b400",
    email: "#0ea5e9", organic_search: "#34a853", direct: "#64748b", referral: "#f97316",
    store: "#8b5cf6", support: "#ef4444", newsletter: "#14b8a6",
  };
  const PALETTE = ["#3d5afe", "#ec4899", "#10b981", "#f59e0b", "#6366f1", "#06b6d4", "#84cc16", "#a855f7"];
  const TYPE_NAMES = {
    social_followed: "Followed us", social_engaged: "Engaged on social", ad_clicked: "Clicked an ad",
    page_viewed: "Viewed a page", email_opened: "Opened an e-mail", email_clicked: "Clicked an e-mail",
    newsletter_subscribed: "Subscribed to the newsletter", store_visited: "Visited a store",
    support_called: "Called support", support_ticket_opened: "Opened a support ticket",
    order_placed: "Placed an order", order_refunded: "Got a refund", identity_linked: "Identity linked",
    customers_merged: "Duplicate record merged", consent_changed: "Consent changed",
  };
  const POLL_MS = 2000;

  const state = {
    version: null, modelA: "first_touch", modelB: "markov", measure: "conversions",
    currency: null, timelineId: null, charts: {}, attribution: null, loading: false,
    shownTimeline: null, shownEvents: null,
  };

  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs = {}, ...children) => {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (key === "class") node.className = value;
      else if (key === "style") node.style.cssText = value;
      else if (key.startsWith("data-")) node.setAttribute(key, value);
      else node[key] = value;
    }
    for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    return node;
  };
  const int = new Intl.NumberFormat("en-US");
  const dec = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });
  const pct = new Intl.NumberFormat("en-US", { style: "percent", maximumFractionDigits: 1 });
  const money = (value, digits = 0) => {
    const options = state.currency
      ? { style: "currency", currency: state.currency, minimumFractionDigits: digits, maximumFractionDigits: digits }
      : { minimumFractionDigits: digits, maximumFractionDigits: digits };
    return new Intl.NumberFormat("en-US", options).format(value);
  };
  const when = (iso) => new Date(iso).toLocaleString("en-GB", {
    day: "numeric", month: "short", year: "numeric", hour: "2-digit", minute: "2-digit", timeZone: "UTC",
  }) + " UTC";
  const day = (iso) => new Date(iso).toLocaleDateString("en-GB", { day: "numeric", month: "short", year: "numeric", timeZone: "UTC" });
  const shortId = (identity) => identity.replace(/^customer-/, "").replace(/^anonymous-/, "");

  function colorOf(label) {
    if (CHANNEL_COLORS[label]) return CHANNEL_COLORS[label];
    let hash = 0;
    for (const char of String(label)) hash = (hash * 31 + char.charCodeAt(0)) >>> 0;
    return PALETTE[hash % PALETTE.length];
  }

  class HttpError extends Error {
    constructor(status, body) {
      super((body && body.detail) || `HTTP ${status}`);
      this.status = status;
      this.body = body;
    }
  }

  async function getJSON(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    if (response.status === 401) {  // the session cookie ended: the login page says how to get a new link
      window.location.assign("/login");
    }
    if (!response.ok) {
      let body = null;
      try { body = await response.json(); } catch (_) { body = null; }
      throw new HttpError(response.status, body);
    }
    return response.json();
  }

  function banner(text) {
    const node = $("banner");
    node.textContent = text || "";
    node.classList.toggle("hidden", !text);
  }

  // --- charts -------------------------------------------------------------------------

  function chart(id, config) {
    const existing = state.charts[id];
    if (existing) {
      existing.data = config.data;
      existing.options = config.options;
      existing.update("none");
      return existing;
    }
    state.charts[id] = new Chart($(id), config);
    return state.charts[id];
  }

  function baseOptions(extra = {}) {
    return {
      responsive: true, maintainAspectRatio: false, animation: { duration: 300 },
      plugins: { legend: { position: "bottom", labels: { boxWidth: 12, usePointStyle: true } } },
      ...extra,
    };
  }

  // --- attribution --------------------------------------------------------------------

  // The `model` parameter of /v1/attribution is an enum in the OpenAPI schema, built from
  // projections.attribution.MODELS: the one list of models.
  async function attributionModels() {
    const schema = await getJSON("/openapi.json");
    const model = schema.paths["/v1/attribution"].get.parameters.find((p) => p.name === "model");
    return model.schema.enum;
  }

  async function fillModelSelects() {
    const models = await attributionModels();
    for (const [id, chosen] of [["model-a", state.modelA], ["model-b", state.modelB]]) {
      const select = $(id);
      for (const model of models) select.append(el("option", { value: model, textContent: modelTitle(model) }));
      select.value = chosen;
    }
  }

  function listenToModelControls() {
    $("model-a").addEventListener("change", (e) => { state.modelA = e.target.value; loadAttribution(); });
    $("model-b").addEventListener("change", (e) => { state.modelB = e.target.value; loadAttribution(); });
    for (const button of document.querySelectorAll(".toggle button")) {
      button.addEventListener("click", () => {
        state.measure = button.dataset.measure;
        for (const other of document.querySelectorAll(".toggle button")) other.classList.toggle("on", other === button);
        renderAttribution();
      });
    }
  }

  async function loadAttribution() {
    const [a, b] = await Promise.all([
      getJSON(`/v1/attribution?model=${state.modelA}`),
      getJSON(`/v1/attribution?model=${state.modelB}`),
    ]);
    state.attribution = { a, b };
    renderAttribution();
  }

  function renderAttribution() {
    if (!state.attribution) return;
    const { a, b } = state.attribution;
    const measure = state.measure;
    const byLabel = (doc) => Object.fromEntries(doc.rows.map((row) => [row.channel ?? row.campaign, row[measure]]));
    const valuesA = byLabel(a);
    const valuesB = byLabel(b);
    const labels = [...new Set([...Object.keys(valuesA), ...Object.keys(valuesB)])]
      .sort((x, y) => (valuesA[y] ?? 0) - (valuesA[x] ?? 0));
    const format = measure === "value" ? money : dec.format;
    chart("attribution-chart", {
      type: "bar",
      data: {
        labels,
        datasets: [
          { label: modelTitle(a.model), data: labels.map((l) => valuesA[l] ?? 0), backgroundColor: "#3d5afe", borderRadius: 4 },
          { label: modelTitle(b.model), data: labels.map((l) => valuesB[l] ?? 0), backgroundColor: "#f59e0b", borderRadius: 4 },
        ],
      },
      options: baseOptions({
        scales: { y: { beginAtZero: true, title: { display: true, text: measure === "value" ? "Revenue credited" : "Conversions credited" } } },
        plugins: {
          legend: { position: "bottom", labels: { boxWidth: 12, usePointStyle: true } },
          tooltip: { callbacks: { label: (ctx) => `${ctx.dataset.label}: ${format(ctx.parsed.y)}` } },
        },
      }),
    });
    $("col-a").textContent = modelTitle(a.model);
    $("col-b").textContent = modelTitle(b.model);
    const body = $("attribution-table").tBodies[0];
    body.replaceChildren(...labels.map((label) => {
      const left = valuesA[label] ?? 0;
      const right = valuesB[label] ?? 0;
      const diff = right - left;
      return el("tr", { "data-channel": label },
        el("td", {}, el("span", { class: "swatch", style: `background:${colorOf(label)}` }), label),
        el("td", { class: "num", "data-testid": "credit-a" }, format(left)),
        el("td", { class: "num", "data-testid": "credit-b" }, format(right)),
        el("td", { class: `num ${diff > 0 ? "up" : diff < 0 ? "down" : ""}` }, (diff > 0 ? "+" : "") + format(diff)));
    }));
    const unattributed = a.unattributed_conversions
      ? ` · ${int.format(a.unattributed_conversions)} conversions had no touch before them and are credited to no channel`
      : "";
    const notes = [...(a.notes || []), ...(b.notes || [])];
    $("attribution-note").textContent =
      `${int.format(a.conversions)} conversions worth ${money(a.value)} credited${unattributed}.` +
      (notes.length ? ` ${[...new Set(notes)].join(" ")}` : "");
  }

  // --- the other views -------------------------------------------------------------------

  function renderKpis(funnel, customers) {
    $("kpi-reached").textContent = int.format(funnel.reached);
    $("kpi-converted").textContent = int.format(funnel.converted);
    $("kpi-rate").textContent = `conversion rate ${pct.format(funnel.conversion_rate)}`;
    $("kpi-repeat").textContent = int.format(funnel.repeat_buyers);
    $("kpi-repeat-rate").textContent = `${pct.format(funnel.repeat_rate)} of customers`;
    $("kpi-prospects").textContent = int.format(funnel.prospects);
    $("kpi-revenue").textContent = money(customers.revenue);
  }

  function renderFunnel(funnel) {
    const names = { reached: "Reached", converted: "Customers", repeat_buyers: "Repeat buyers" };
    const stages = funnel.stages;
    chart("funnel-chart", {
      type: "bar",
      data: {
        labels: stages.map((s) => names[s.stage] || s.stage),
        datasets: [{ data: stages.map((s) => s.groups), backgroundColor: ["#a5b4fc", "#6366f1", "#312e81"], borderRadius: 6 }],
      },
      options: baseOptions({ indexAxis: "y", plugins: { legend: { display: false } }, scales: { x: { beginAtZero: true } } }),
    });
    $("funnel-list").replaceChildren(...stages.map((s, i) => {
      const previous = i ? stages[i - 1] : null;
      const share = previous ? `${pct.format(previous.groups ? s.groups / previous.groups : 0)} of ${(names[previous.stage] || previous.stage).toLowerCase()}` : "";
      return el("li", { "data-stage": s.stage }, el("span", {}, `${names[s.stage] || s.stage}: ${int.format(s.groups)}`), el("span", {}, share));
    }));
    $("funnel-list").append(el("li", {}, el("span", {}, `Still on the way: ${int.format(funnel.prospects)}`),
      el("span", {}, "prospects without an order")));
  }

  function renderFirstContact(doc) {
    const body = $("first-contact-table").tBodies[0];
    body.replaceChildren(...doc.rows.map((row) => {
      const label = row.channel ?? row.campaign;
      return el("tr", {},
        el("td", {}, el("span", { class: "swatch", style: `background:${colorOf(label)}` }), label),
        el("td", { class: "num" }, int.format(row.reached)),
        el("td", { class: "num" }, int.format(row.converted)),
        el("td", {}, el("div", { class: "rate" },
          el("div", { class: "rate-bar" }, el("span", { style: `width:${Math.round(row.conversion_rate * 100)}%` })),
          pct.format(row.conversion_rate))),
        el("td", { class: "num" }, money(row.revenue)));
    }));
  }

  function renderConversionTime(doc) {
    const rows = doc.rows;
    const buckets = doc.buckets || Object.keys(BUCKETS);
    chart("conversion-time-chart", {
      type: "bar",
      data: {
        labels: rows.map((r) => r.first_channel ?? r.first_campaign),
        datasets: buckets.map((bucket, i) => ({
          label: BUCKETS[bucket] || bucket,
          data: rows.map((r) => r.histogram[bucket] || 0),
          backgroundColor: BUCKET_COLORS[i % BUCKET_COLORS.length],
        })),
      },
      options: baseOptions({
        indexAxis: "y",
        scales: { x: { stacked: true, beginAtZero: true, title: { display: true, text: "Customers" } }, y: { stacked: true } },
        plugins: {
          legend: { position: "bottom", labels: { boxWidth: 12, usePointStyle: true } },
          tooltip: {
            callbacks: {
              afterTitle: (items) => {
                const row = rows[items[0].dataIndex];
                return `median ${dec.format(row.median_days)} days · p90 ${dec.format(row.p90_days)} days`;
              },
            },
          },
        },
      }),
    });
    $("conversion-time-note").textContent = doc.conversions
      ? `All channels: median ${dec.format(doc.median_days)} days, mean ${dec.format(doc.mean_days)}, ` +
        `90% convert within ${dec.format(doc.p90_days)} days.`
      : "No conversions yet.";
  }

  function chips(labels) {
    const box = el("div", { class: "chips" });
    labels.forEach((label, i) => {
      if (i) box.append(el("span", { class: "arrow" }, "→"));
      box.append(el("span", { class: "chip", style: `background:${colorOf(label)}` }, label));
    });
    return box;
  }

  function renderPaths(doc) {
    $("paths-list").replaceChildren(...doc.rows.slice(0, 10).map((row) => el("li", {},
      chips(row.path),
      el("div", { class: "path-figures" }, `${int.format(row.conversions)} · ${pct.format(row.share)}`,
        el("small", {}, money(row.value))))));
    if (!doc.rows.length) $("paths-list").append(el("li", {}, "No conversions yet."));
  }

  function renderCustomers(doc) {
    const body = $("customers-table").tBodies[0];
    body.replaceChildren(...doc.rows.slice(0, 10).map((row) => {
      const tr = el("tr", { "data-identity": row.identity },
        el("td", {}, shortId(row.identity)),
        el("td", { class: "num" }, int.format(row.orders)),
        el("td", { class: "num" }, money(row.revenue)),
        el("td", {}, row.first_contact_channel || "–"),
        el("td", {}, row.rfm));
      tr.addEventListener("click", () => openTimeline(row.identity));
      return tr;
    }));
  }

  // --- timeline -------------------------------------------------------------------------

  function fact(label, value, note) {
    return el("div", { class: "fact" }, el("div", { class: "fact-label" }, label),
      el("div", { class: "fact-value" }, value, ...(note ? [el("small", {}, note)] : [])));
  }

  function eventDetail(event) {
    const data = event.data || {};
    const parts = [];
    if (event.campaign) parts.push(`campaign ${event.campaign}`);
    if (event.type === "order_placed") parts.push(`order ${data.order_id} · ${data.revenue} ${data.currency}`);
    else if (event.type === "order_refunded") parts.push(`order ${data.order_id} · −${data.amount} ${data.currency || ""}`);
    else if (event.type === "identity_linked") parts.push(`${event.anonymous_id} → ${event.customer_id}`);
    else if (event.type === "customers_merged") parts.push(`${data.duplicate_customer_id} merged into ${event.customer_id}`);
    else if (event.type === "consent_changed") parts.push(`${data.purpose}: ${data.granted ? "granted" : "withdrawn"}`);
    else {
      for (const key of ["url", "subject", "title", "platform", "handle", "store_id", "reason"]) {
        if (data[key]) parts.push(String(data[key]));
      }
    }
    if (event.anonymous_id && event.type !== "identity_linked" && !event.customer_id) parts.push(`as ${event.anonymous_id}`);
    return parts.join(" · ");
  }

  function renderTimeline(doc) {
    const sameCustomer = state.shownTimeline === doc.identity;
    const before = sameCustomer ? state.shownEvents : null;
    state.shownTimeline = doc.identity;
    state.shownEvents = new Set(doc.events.map((event) => event.event_id));
    $("drawer-title").textContent = shortId(doc.identity);
    const first = doc.first_contact;
    const order = doc.first_order;
    $("timeline-facts").replaceChildren(
      fact("First contact", first ? first.channel : "–", first ? day(first.occurred_at) : ""),
      fact("First order", order ? money(order.revenue, 2) : "not yet", order ? day(order.occurred_at) : ""),
      fact("Orders", int.format(doc.order_count), `${int.format(doc.touch_count)} touches`),
      fact("Net revenue", money(doc.net_revenue, 2), doc.refunded ? `${money(doc.refunded, 2)} refunded` : ""),
    );
    $("timeline-identities").replaceChildren("Identities: ", ...doc.identities.map((id) => el("code", {}, shortId(id))));
    $("timeline-events").replaceChildren(...doc.events.map((event) => {
      const marker = event.kind === "order" ? "#16a34a" : event.kind === "refund" ? "#dc2626"
        : event.channel ? colorOf(event.channel) : "#94a3b8";
      const arrived = before !== null && !before.has(event.event_id);
      return el("li", { class: `ev-${event.kind}${arrived ? " ev-new" : ""}`, style: `--marker:${marker}`, "data-event-id": event.event_id },
        el("div", { class: "ev-when" }, when(event.occurred_at), ...(arrived ? [el("span", { class: "badge" }, "new")] : [])),
        el("div", { class: "ev-what" }, (TYPE_NAMES[event.type] || event.type) + (event.channel ? ` · ${event.channel}` : "")),
        el("div", { class: "ev-detail" }, eventDetail(event)));
    }));
  }

  async function openTimeline(identity) {
    try {
      const doc = await getJSON(`/v1/customers/${encodeURIComponent(identity)}/timeline`);
      state.timelineId = identity;
      renderTimeline(doc);
      $("drawer").classList.remove("hidden");
      $("scrim").classList.remove("hidden");
      banner("");
    } catch (error) {
      banner(error.status === 404 ? `No customer or identity “${identity}” is known.` : `Could not load the timeline: ${error.message}`);
    }
  }

  function closeTimeline() {
    state.timelineId = null;
    $("drawer").classList.add("hidden");
    $("scrim").classList.add("hidden");
  }

  // --- loading and live refresh ------------------------------------------------------------

  async function loadAll(status) {
    if (state.loading) return;
    state.loading = true;
    try {
      const [funnel, firstContact, conversionTime, paths, customers, quality] = await Promise.all([
        getJSON("/v1/funnel"), getJSON("/v1/first-contact"), getJSON("/v1/conversion-time"),
        getJSON("/v1/paths"), getJSON("/v1/customers/top"), getJSON("/v1/data-quality"),
      ]);
      const currencies = Object.keys(quality.currencies || {});
      state.currency = currencies.length === 1 ? currencies[0] : null;
      renderKpis(funnel, customers);
      renderFunnel(funnel);
      renderFirstContact(firstContact);
      renderConversionTime(conversionTime);
      renderPaths(paths);
      renderCustomers(customers);
      await loadAttribution();
      if (state.timelineId) {
        const doc = await getJSON(`/v1/customers/${encodeURIComponent(state.timelineId)}/timeline`);
        renderTimeline(doc);
      }
      state.version = status.version;
      document.body.dataset.version = String(status.version);
      document.body.dataset.loaded = "true";
      banner("");
    } catch (error) {
      banner(`Could not load the views: ${error.message}`);
    } finally {
      state.loading = false;
    }
  }

  async function poll() {
    try {
      const status = await getJSON("/v1/views/status");
      const dot = $("live-dot");
      dot.className = "dot on";
      const folded = status.journeys_applied
        ? `${int.format(status.journeys_applied)} journey updates`
        : `${int.format(status.events_applied)} events`;
      $("live-text").textContent = `Live · ${folded} · checked ${new Date().toLocaleTimeString("en-GB")}`;
      $("foot-position").textContent = status.position === null ? "The log is empty." : `Log position ${int.format(status.position)}`;
      $("foot-data-time").textContent = status.data_time ? when(status.data_time) : "–";
      if (status.version !== state.version) {
        await loadAll(status);
        void dot.offsetWidth;
        dot.className = "dot on flash";
      }
    } catch (error) {
      $("live-dot").className = "dot off";
      $("live-text").textContent = "Offline — retrying";
    }
  }

  function start() {
    Chart.defaults.font.family = getComputedStyle(document.documentElement).fontFamily;
    Chart.defaults.color = "#66708a";
    fillModelSelects().catch(() => banner("Could not load the list of attribution models."));
    listenToModelControls();
    $("search").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = $("search-input").value.trim();
      if (value) openTimeline(value);
    });
    $("drawer-close").addEventListener("click", closeTimeline);
    $("scrim").addEventListener("click", closeTimeline);
    document.addEventListener("keydown", (event) => { if (event.key === "Escape") closeTimeline(); });
    poll();
    setInterval(poll, POLL_MS);
  }

  document.addEventListener("DOMContentLoaded", start);
})();
