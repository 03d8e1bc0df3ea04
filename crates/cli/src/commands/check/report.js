
// keyturn's coverage report: renders the JSON in #report-data as summary cards, one expiry timeline per vault and
// a sortable, filterable table. Every string from the data (names, tags, details) goes into the page through
// textContent or an attribute value, never parsed as markup: a name or tag value is written by whoever may write
// the object, and is only ever shown as text.
(function () {
  "use strict";

  const data = JSON.parse(document.getElementById("report-data").textContent);
  const DAY = 86400000;
  const now = Date.parse(data.generatedAt);
  const lead = data.nearExpiryLeadDays;
  const SVG = "http://www.w3.org/2000/svg";
  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

  // What keyturn will do, in the order the cards and the sort use.
  const OUTCOMES = [
    { key: "rotate", label: "rotated by keyturn", colour: "#1f9d55" },
    { key: "renew", label: "renewed by keyturn", colour: "#2474c6" },
    { key: "notify", label: "a person must act", colour: "#d48806" },
    { key: "nothing", label: "nothing for keyturn", colour: "#8792a2" },
    { key: "problem", label: "policy problem", colour: "#d93a3a" },
  ];
  const outcomeOf = Object.fromEntries(OUTCOMES.map((o, i) => [o.key, Object.assign({ rank: i }, o)]));

  const objects = data.objects.map((o) => Object.assign({}, o, {
    key: o.vault + "/" + o.kind.toLowerCase() + "/" + o.name,
    expiresAt: o.expires ? Date.parse(o.expires) : null,
    haystack: [o.vault, o.kind, o.name, o.policy, o.outcome, o.expiresIn,
      o.nearExpiry.action, o.nearExpiry.detail, o.expired.action, o.expired.detail,
      o.newVersion.action, o.newVersion.detail].join("\n").toLowerCase(),
  }));

  const state = { query: "", hidden: new Set(), sort: { column: "expires", direction: 1 } };

  // ---- small DOM helpers: text only, never markup -------------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function svg(tag, attributes, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function accent(node, outcome) {
    node.style.setProperty("--accent", outcomeOf[outcome].colour);
    return node;
  }

  function utc(ms, withTime) {
    const d = new Date(ms);
    const date = d.getUTCFullYear() + "-" + String(d.getUTCMonth() + 1).padStart(2, "0") + "-" +
      String(d.getUTCDate()).padStart(2, "0");
    if (!withTime) return date;
    return date + " " + String(d.getUTCHours()).padStart(2, "0") + ":" + String(d.getUTCMinutes()).padStart(2, "0") + " UTC";
  }

  function shortDate(ms) {
    const d = new Date(ms);
    return MONTHS[d.getUTCMonth()] + " " + d.getUTCDate();
  }

  function plural(n, word) {
    return n + " " + word + (n === 1 ? "" : "s");
  }

  function visible(o) {
    return !state.hidden.has(o.outcome) && (state.query === "" || o.haystack.includes(state.query));
  }

  // ---- summary ------------------------------------------------------------------------------------------------

  function renderHeader() {
    const generated = utc(now, true);
    document.getElementById("subtitle").textContent =
      plural(data.vaults.length, "vault") + ": " + data.vaults.join(", ") + " · generated " + generated;
    const soon = objects.filter((o) => o.expiresAt !== null && o.expiresAt > now && o.expiresAt - now <= lead * DAY).length;
    const gone = objects.filter((o) => o.expiresAt !== null && o.expiresAt <= now).length;
    const never = objects.filter((o) => o.expiresAt === null).length;
    const facts = document.getElementById("facts");
    const parts = [
      [String(soon), " expire within " + lead + " days (Key Vault's near-expiry warning)"],
      [String(gone), " already expired"],
      [String(never), " never expire"],
      [data.defaultThresholds.join(", "), " days before expiry: the default notice thresholds"],
    ];
    parts.forEach(([strong, rest], i) => {
      if (i > 0) facts.append(" · ");
      facts.append(el("strong", null, strong), rest);
    });
  }

  function renderCards() {
    const cards = document.getElementById("cards");
    const total = el("div", "card total");
    total.append(el("span", "count", String(objects.length)), el("span", "label", "objects surveyed"));
    cards.append(total);
    for (const outcome of OUTCOMES) {
      const count = objects.filter((o) => o.outcome === outcome.key).length;
      const card = accent(el("button", "card"), outcome.key);
      card.type = "button";
      card.dataset.outcome = outcome.key;
      card.setAttribute("aria-pressed", "true");
      card.title = "Show or hide the objects keyturn's plan puts here";
      card.append(el("span", "count", String(count)), el("span", "label", outcome.label));
      card.addEventListener("click", () => {
        if (state.hidden.has(outcome.key)) state.hidden.delete(outcome.key);
        else state.hidden.add(outcome.key);
        card.setAttribute("aria-pressed", String(!state.hidden.has(outcome.key)));
        render();
      });
      cards.append(card);
    }
  }

  // ---- timelines ----------------------------------------------------------------------------------------------

  const WIDTH = 1200;
  const LABEL = 250;
  const RIGHT = 70;
  const AXIS = 40;
  const LANE = 21;

  // The time one vault's timeline shows: a week back (more for expired objects, up to 90 days), and ahead to its
  // last expiry (at least the near-expiry window plus two weeks, at most a year and a month). The next 90 days
  // are what people act on, so when the vault reaches further, they keep most of the width and the rest of the
  // year is compressed into the right-hand part, past a marked break.
  const NEAR = 90 * DAY;
  const NEAR_SHARE = 0.74;

  function scale(items, left, width) {
    const times = items.map((o) => o.expiresAt);
    const from = Math.max(now - 90 * DAY, Math.min(now - 7 * DAY, ...times.map((t) => t - 3 * DAY)));
    const to = Math.min(now + 400 * DAY, Math.max(now + (lead + 14) * DAY, ...times.map((t) => t + 5 * DAY)));
    const clamp = (t) => Math.min(Math.max(t, from), to);
    const linear = (a, b, x0, w) => (t) => x0 + ((t - a) / (b - a)) * w;
    if (to <= now + NEAR + 30 * DAY) {
      const x = linear(from, to, left, width);
      return { from, to, x: (t) => x(clamp(t)), segments: [[from, to]], breakAt: null };
    }
    const split = now + NEAR;
    const near = linear(from, split, left, width * NEAR_SHARE);
    const far = linear(split, to, left + width * NEAR_SHARE, width * (1 - NEAR_SHARE));
    const x = (t) => (clamp(t) <= split ? near(clamp(t)) : far(clamp(t)));
    return { from, to, x, segments: [[from, split], [split, to]], breakAt: split };
  }

  // Tick times for each segment: a step of days that gives at most `most` ticks, counted from now.
  function ticks(segments) {
    const out = [];
    segments.forEach(([from, to], i) => {
      const most = i === 0 ? 10 : 4;
      const days = (to - from) / DAY;
      const step = [1, 2, 7, 14, 30, 61, 91, 182].find((s) => days / s <= most) || 365;
      const first = Math.ceil((from - now) / (step * DAY));
      for (let k = first; now + k * step * DAY <= to; k++) {
        const t = now + k * step * DAY;
        if (k !== 0 && (i === 0 || t > from + step * DAY / 2)) out.push(t);
      }
    });
    return out;
  }

  function crossings(o) {
    if (o.expiresAt === null || !o.thresholds.days) return [];
    return o.thresholds.days.map((days) => ({ days, at: o.expiresAt - days * DAY }));
  }

  function describe(o) {
    const lines = [o.kind.toLowerCase() + " " + o.vault + "/" + o.name];
    lines.push(o.expiresAt === null ? "never expires" : "expires " + utc(o.expiresAt, true) + " (" + o.expiresIn + ")");
    lines.push("keyturn: " + outcomeOf[o.outcome].label);
    lines.push("near expiry: " + o.nearExpiry.action + (o.nearExpiry.detail ? ": " + o.nearExpiry.detail : ""));
    lines.push("expired: " + o.expired.action + (o.expired.detail ? ": " + o.expired.detail : ""));
    if (o.thresholds.error) lines.push("thresholds: " + o.thresholds.error);
    else lines.push("notices at " + o.thresholds.days.join(", ") + " days before expiry (" + o.thresholds.source + ")");
    return lines.join("\n");
  }

  function truncate(text, length) {
    return text.length > length ? text.slice(0, length - 1) + "…" : text;
  }

  function timeline(vault, all, shown) {
    const box = el("div", "vault");
    box.dataset.vault = vault;
    const head = el("div", "vault-head");
    const dated = all.filter((o) => o.expiresAt !== null);
    head.append(el("h3", null, vault), el("span", "meta", plural(all.length, "object") + ", " + shown.length + " shown"));
    const legend = el("div", "legend");
    for (const outcome of OUTCOMES) {
      const swatch = el("span", "sw");
      swatch.style.background = outcome.colour;
      const item = el("span");
      item.append(swatch, outcome.label);
      legend.append(item);
    }
    head.append(legend);
    box.append(head);

    const lanes = shown.filter((o) => o.expiresAt !== null).sort((a, b) => a.expiresAt - b.expiresAt || a.name.localeCompare(b.name));
    if (dated.length === 0) {
      box.append(el("p", "never", "No object in this vault expires."));
    } else if (lanes.length === 0) {
      box.append(el("p", "never", "No object with an expiry matches the filter."));
    } else {
      const { from, to, x, segments, breakAt } = scale(dated, LABEL, WIDTH - LABEL - RIGHT);
      const height = AXIS + lanes.length * LANE + 8;
      const chart = svg("svg", { class: "timeline", viewBox: "0 0 " + WIDTH + " " + height, role: "img" });
      chart.append(svg("title", {}, "Expiry timeline of " + vault));

      const band = svg("g", {});
      band.append(svg("rect", { class: "band", x: x(now), y: AXIS - 6, width: Math.max(0, x(now + lead * DAY) - x(now)), height: height - AXIS + 6 }));
      band.append(svg("text", { class: "band-label", x: x(now) + 6, y: AXIS - 10 }, "near expiry (" + lead + " days)"));
      chart.append(band);

      const axis = svg("g", { class: "axis" });
      for (const t of ticks(segments)) {
        axis.append(svg("line", { x1: x(t), x2: x(t), y1: AXIS - 4, y2: height }));
        axis.append(svg("text", { x: x(t), y: 14, "text-anchor": "middle" }, shortDate(t)));
      }
      if (breakAt !== null) {
        axis.append(svg("line", { class: "break", x1: x(breakAt), x2: x(breakAt), y1: 20, y2: height }));
        axis.append(svg("text", { class: "break-label", x: x(breakAt) + 5, y: 30 }, "compressed beyond 90 days ›"));
      }
      chart.append(axis);

      const lanesGroup = svg("g", {});
      lanes.forEach((o, i) => {
        const y = AXIS + i * LANE + LANE / 2;
        const colour = outcomeOf[o.outcome].colour;
        const lane = svg("g", { class: "lane", "data-key": o.key });
        lane.append(svg("title", {}, describe(o)));
        lane.append(svg("rect", { class: "lane-bg", x: 0, y: y - LANE / 2, width: WIDTH, height: LANE }));
        lane.append(svg("text", { class: "lane-label", x: 8, y: y + 4 }, o.kind.charAt(0) + "  " + truncate(o.name, 34)));
        const marks = crossings(o);
        const start = marks.length ? Math.min(...marks.map((m) => m.at)) : o.expiresAt;
        lane.append(svg("line", { x1: x(start), x2: x(o.expiresAt), y1: y, y2: y, stroke: colour, "stroke-opacity": 0.35, "stroke-width": 3, "stroke-linecap": "round" }));
        const next = o.thresholds.next ? o.thresholds.next.days : null;
        for (const mark of marks) {
          if (mark.at < from || mark.at > to || mark.days === 0) continue;
          const isNext = mark.days === next;
          lane.append(svg("line", { class: "tick", x1: x(mark.at), x2: x(mark.at), y1: y - (isNext ? 7 : 5), y2: y + (isNext ? 7 : 5), stroke: colour, "stroke-width": isNext ? 2.5 : 1.5, "stroke-opacity": mark.at <= now ? 0.45 : 1 }));
        }
        const beyond = o.expiresAt > to;
        if (beyond) {
          const tip = x(to);
          lane.append(svg("path", { d: "M" + (tip - 4) + " " + (y - 6) + " L" + (tip + 6) + " " + y + " L" + (tip - 4) + " " + (y + 6) + " Z", fill: colour }));
          lane.append(svg("text", { x: tip + 10, y: y + 4 }, shortDate(o.expiresAt) + " " + new Date(o.expiresAt).getUTCFullYear()));
        } else {
          const expired = o.expiresAt <= now;
          lane.append(svg("circle", { class: "expiry", cx: x(o.expiresAt), cy: y, r: 5.5, fill: colour, stroke: expired ? "#17202e" : "#fff", "stroke-width": expired ? 1.5 : 2 }));
        }
        lanesGroup.append(lane);
      });
      chart.append(lanesGroup);

      const nowMark = svg("g", { class: "now" });
      nowMark.append(svg("line", { x1: x(now), x2: x(now), y1: AXIS - 18, y2: height }));
      nowMark.append(svg("text", { x: x(now), y: AXIS - 22, "text-anchor": "middle" }, "now"));
      chart.append(nowMark);
      box.append(chart);
    }
    const undated = shown.filter((o) => o.expiresAt === null);
    if (undated.length) {
      const names = undated.slice(0, 12).map((o) => o.name).join(", ");
      const more = undated.length > 12 ? " and " + (undated.length - 12) + " more" : "";
      box.append(el("p", "never", "Never expire (no notice, no event): " + names + more));
    }
    return box;
  }

  function renderTimelines() {
    const container = document.getElementById("timelines");
    container.replaceChildren();
    for (const vault of data.vaults) {
      const all = objects.filter((o) => o.vault === vault);
      container.append(timeline(vault, all, all.filter(visible)));
    }
  }

  // ---- table --------------------------------------------------------------------------------------------------

  const byText = (f) => (a, b) => f(a).localeCompare(f(b));
  const byNumber = (f) => (a, b) => f(a) - f(b);
  const COLUMNS = [
    { key: "name", label: "Object", compare: byText((o) => o.name) },
    { key: "vault", label: "Vault", compare: byText((o) => o.vault) },
    { key: "expires", label: "Expires", compare: byNumber((o) => (o.expiresAt === null ? Infinity : o.expiresAt)) },
    { key: "outcome", label: "keyturn will", compare: byNumber((o) => outcomeOf[o.outcome].rank) },
    { key: "nearExpiry", label: "At near expiry", compare: byText((o) => o.nearExpiry.action) },
    { key: "expired", label: "At expiry", compare: byText((o) => o.expired.action) },
    { key: "notices", label: "Notices", compare: byNumber((o) => (o.thresholds.next ? Date.parse(o.thresholds.next.at) : Infinity)) },
    { key: "newVersion", label: "New version", compare: byText((o) => o.newVersion.action + o.newVersion.detail) },
    { key: "policy", label: "Policy", compare: byText((o) => o.policy) },
    { key: "version", label: "Version", compare: byText((o) => o.version || "") },
  ];

  function renderColumns() {
    const row = document.getElementById("columns");
    for (const column of COLUMNS) {
      const th = el("th");
      th.dataset.column = column.key;
      const button = el("button", null, column.label);
      button.type = "button";
      button.addEventListener("click", () => {
        const same = state.sort.column === column.key;
        state.sort = { column: column.key, direction: same ? -state.sort.direction : 1 };
        render();
      });
      th.append(button);
      row.append(th);
    }
  }

  function action(cell, forecast) {
    cell.append(el("b", null, forecast.action));
    if (forecast.detail) cell.append(": " + forecast.detail);
    return cell;
  }

  function tableRow(o) {
    const tr = el("tr");
    tr.dataset.key = o.key;
    tr.dataset.outcome = o.outcome;
    const name = el("td", "name", o.name);
    name.append(el("span", "small", o.kind.toLowerCase()));
    tr.append(name);
    tr.append(el("td", "in-vault", o.vault));
    const when = el("td", "when");
    const relative = el("span", o.expiresAt === null ? "" : o.expiresAt <= now ? "late" : o.expiresAt - now <= lead * DAY ? "soon" : "", o.expiresIn + (o.enabled ? "" : " (disabled)"));
    when.append(relative);
    if (o.expiresAt !== null) when.append(el("span", "small", utc(o.expiresAt, true)));
    tr.append(when);
    const outcome = el("td");
    outcome.append(accent(el("span", "chip", outcomeOf[o.outcome].label), o.outcome));
    tr.append(outcome);
    tr.append(action(el("td", "detail wide"), o.nearExpiry));
    tr.append(action(el("td", "detail"), o.expired));
    const notices = el("td", "detail");
    if (o.thresholds.error) {
      notices.append(el("b", null, "invalid"), ": " + o.thresholds.error);
    } else {
      notices.append(o.thresholds.days.join(", ") + " days" + (o.thresholds.source === "tag" ? " (own tag)" : ""));
      if (o.thresholds.next) {
        notices.append(el("span", "small", "next: " + plural(o.thresholds.next.days, "day") + " before, " + utc(Date.parse(o.thresholds.next.at), false)));
      }
    }
    tr.append(notices);
    tr.append(action(el("td", "detail"), o.newVersion));
    tr.append(el("td", "detail", o.policy));
    tr.append(el("td", "version", o.version ? o.version.slice(0, 8) : "-"));
    return tr;
  }

  function renderTable(shown) {
    const column = COLUMNS.find((c) => c.key === state.sort.column);
    const sorted = shown.slice().sort((a, b) => column.compare(a, b) * state.sort.direction || a.key.localeCompare(b.key));
    document.getElementById("rows").replaceChildren(...sorted.map(tableRow));
    for (const th of document.querySelectorAll("#columns th")) {
      const sorting = th.dataset.column === state.sort.column;
      if (sorting) th.setAttribute("aria-sort", state.sort.direction > 0 ? "ascending" : "descending");
      else th.removeAttribute("aria-sort");
    }
    document.getElementById("empty").hidden = shown.length > 0;
    document.getElementById("shown").textContent = shown.length + " of " + plural(objects.length, "object") + " shown";
  }

  function render() {
    const shown = objects.filter(visible);
    renderTimelines();
    renderTable(shown);
  }

  document.getElementById("filter").addEventListener("input", (event) => {
    state.query = event.target.value.trim().toLowerCase();
    render();
  });

  renderHeader();
  renderCards();
  renderColumns();
  render();
})();
