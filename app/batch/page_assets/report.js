/* The season page (app.batch.page). Every value comes from the inlined JSON and reaches the document
   as text (textContent, createTextNode, DOM attributes set one by one): never as markup. */
(function () {
  'use strict';
  const D = JSON.parse(document.getElementById('season-data').textContent);
  const F = D.fields;
  const N = F.id.length;
  const PAGE_ROWS = 200;
  const STATE_LABEL = {
    paid: 'paid', unpaid: 'assessed, not paid', not_assessable: 'not assessable',
    insufficient_data: 'insufficient data', failed: 'failed (will retry)', given_up: 'given up',
    remaining: 'not done yet', refused: 'refused by the import'
  };
  const STATE_COLOUR = {
    paid: '#c0392b', unpaid: '#7fb77e', not_assessable: '#e07b39', insufficient_data: '#f0c24b',
    failed: '#7d3c98', given_up: '#4a235a', remaining: '#b5b5b5'
  };

  // ---- small helpers: text only -------------------------------------------------------------
  function el(tag, props, children) {
    const node = document.createElement(tag);
    if (props) {
      for (const k of Object.keys(props)) {
        if (k === 'text') node.textContent = props[k];
        else if (k === 'cls') node.className = props[k];
        else if (k === 'style') node.style.cssText = props[k];
        else if (k.startsWith('on')) node.addEventListener(k.slice(2), props[k]);
        else node.setAttribute(k, props[k]);
      }
    }
    for (const c of children || []) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  }
  function svg(tag, attrs) {
    const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const k of Object.keys(attrs || {})) node.setAttribute(k, attrs[k]);
    return node;
  }
  const money = (cents) => (cents / 100).toLocaleString('en-GB', { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  const intf = (n) => n.toLocaleString('en-GB');
  const fix = (v, d) => (v === null || v === undefined ? '–' : Number(v).toFixed(d));
  const dayIso = (d) => new Date(d * 86400000).toISOString().slice(0, 10);
  const isoDay = (s) => Math.round(Date.parse(s + 'T00:00:00Z') / 86400000);

  function category(i) {
    const s = F.state[i];
    if (s === 'assessed') return F.cents[i] ? 'paid' : 'unpaid';
    return s;
  }
  function share(i) { const t = F.terms[i]; return t && t[5] !== null && t[5] !== undefined ? t[5] : null; }
  function shareColour(f) {  // payout share of the insured sum, 0 → 1
    const stops = [[253, 228, 184], [243, 156, 74], [192, 57, 43], [107, 15, 26]];
    const t = Math.max(0, Math.min(1, f)) * (stops.length - 1);
    const k = Math.min(Math.floor(t), stops.length - 2);
    const u = t - k;
    const c = stops[k].map((a, j) => Math.round(a + (stops[k + 1][j] - a) * u));
    return 'rgb(' + c.join(',') + ')';
  }

  // ---- page skeleton ------------------------------------------------------------------------
  const R = D.report;
  const header = el('header', null, [
    el('h1', { text: 'Season report' }),
    el('span', { cls: 'facts', text: 'season ' + D.fingerprint.slice(0, 12) + ' · code ' + D.code_version + ' · ' + D.generated }),
    el('button', { id: 'open-audit', text: 'Audit', onclick: () => { const d = document.getElementById('audit'); d.open = true; d.scrollIntoView(); } }),
  ]);
  document.body.append(header);
  const totals = el('div', { id: 'totals' });
  document.body.append(totals);
  const tile = (value, label, id) => el('div', { cls: 'tile' }, [el('b', id ? { id: id, text: value } : { text: value }), el('span', { text: label })]);
  const paidCents = Object.entries(R.payout_total_cents);
  totals.append(
    tile(intf(R.insurer_rows.total), "rows in the insurer's file", 'total-rows'),
    tile(intf(R.insurer_rows.imported), 'fields imported'),
    tile(intf(R.insurer_rows.refused), 'refused by the import'),
    tile(intf(R.counts.assessed), 'assessed'),
    tile(intf(R.paid_fields), 'paid', 'total-paid'),
    ...paidCents.map(([cur, cents]) => tile(money(cents) + ' ' + cur, 'total payout', 'total-payout')),
    tile(intf(R.counts.not_assessable + R.counts.insufficient_data), 'explained (no payout)'),
    tile(intf(R.counts.failed + R.counts.given_up + R.counts.remaining), 'failed, given up or not done'));

  if (D.large) {
    document.body.append(el('p', { id: 'large-note', style: 'margin:0 16px 8px', text: 'A national season: ' + intf(D.large.fields) +
      ' fields. The map and the table show the ' + intf(D.large.shown) + ' largest payouts with their evidence; every count and total above covers all fields; every field is in season_result.parquet (QGIS) and payout_map.png.' }));
  }
  const main = el('div', { id: 'main' });
  const mapDiv = el('div', { id: 'map' });
  const evidence = el('div', { id: 'evidence' }, [el('p', { cls: 'muted', text: 'Click a field on the map or a row of the table to see its evidence.' })]);
  main.append(mapDiv, evidence);
  document.body.append(main);

  // ---- map ----------------------------------------------------------------------------------
  let colourBy = 'outcome';
  const map = L.map(mapDiv, { preferCanvas: true, zoomSnap: 0.25, attributionControl: false, worldCopyJump: false });
  const renderer = L.canvas({ padding: 0.5, tolerance: 4 });
  const layers = new Array(N).fill(null);
  const visible = new Uint8Array(N).fill(1);
  let selected = -1;
  let features = 0;
  function style(i) {
    const cat = category(i);
    let colour = STATE_COLOUR[cat] || '#999';
    if (colourBy === 'share') colour = cat === 'paid' || cat === 'unpaid' ? shareColour(share(i) || 0) : '#d5d5d5';
    const on = visible[i] === 1;
    return { color: i === selected ? '#000' : colour, weight: i === selected ? 3 : 1.5, opacity: on ? 1 : 0,
      fillColor: colour, fillOpacity: on ? 0.75 : 0, interactive: on };
  }
  for (let i = 0; i < N; i++) {
    const rings = F.rings[i];
    if (!rings || !rings.length) continue;
    const latlngs = rings.map((flat) => { const r = []; for (let k = 0; k + 1 < flat.length; k += 2) r.push([flat[k + 1], flat[k]]); return r; });
    const layer = L.polygon(latlngs, Object.assign({ renderer: renderer }, style(i)));
    layer.on('click', () => select(i, false));
    layer.bindTooltip(() => el('span', { text: (F.src[i] || F.id[i]) + ' · ' + (STATE_LABEL[category(i)] || F.state[i]) }), { sticky: true });
    layer.addTo(map);
    layers[i] = layer;
    features++;
  }
  let refusedDrawn = 0;
  for (const r of D.refused) {  // rows the import refused, where their geometry is known: outlines only
    if (!r.rings || !r.rings.length) continue;
    const latlngs = r.rings.map((flat) => { const q = []; for (let k = 0; k + 1 < flat.length; k += 2) q.push([flat[k + 1], flat[k]]); return q; });
    L.polygon(latlngs, { renderer: renderer, color: '#555', weight: 1.5, dashArray: '4 3', fill: false })
      .bindTooltip(() => el('span', { text: 'refused (' + r.reason + '): ' + (r.source_id === null ? '(no ID)' : r.source_id) }), { sticky: true })
      .addTo(map);
    refusedDrawn++;
  }
  function restyle() { for (let i = 0; i < N; i++) if (layers[i]) layers[i].setStyle(style(i)); }
  const bulk = D.view ? L.latLngBounds(D.view) : null;
  const whole = D.extent ? L.latLngBounds(D.extent) : null;
  if (bulk) map.fitBounds(bulk); else map.setView([60, 10], 5);
  L.control.scale({ metric: true, imperial: false, maxWidth: 160 }).addTo(map);
  const North = L.Control.extend({ onAdd: () => el('div', { cls: 'north', title: 'north is up', text: '▲\nN', style: 'white-space:pre' }) });
  new North({ position: 'topright' }).addTo(map);
  const coords = el('div', { cls: 'coords', id: 'coords', text: 'lat –, lon –' });
  const Coords = L.Control.extend({ onAdd: () => coords });
  new Coords({ position: 'bottomright' }).addTo(map);
  map.on('mousemove', (e) => { coords.textContent = 'lat ' + e.latlng.lat.toFixed(5) + '°, lon ' + e.latlng.lng.toFixed(5) + '° (WGS 84)'; });
  const outside = bulk ? F.rings.filter((r) => r && r.length && !bulk.contains(L.latLng(r[0][1], r[0][0]))).length : 0;
  const legend = el('div', { cls: 'legend', id: 'legend' });
  const Legend = L.Control.extend({ onAdd: () => { L.DomEvent.disableClickPropagation(legend); return legend; } });
  new Legend({ position: 'bottomleft' }).addTo(map);
  function drawLegend() {
    legend.replaceChildren();
    const counts = {};
    for (let i = 0; i < N; i++) { const c = category(i); counts[c] = (counts[c] || 0) + 1; }
    const modes = el('div', null, [
      el('label', null, [el('input', { type: 'radio', name: 'colour', id: 'colour-outcome', onchange: () => { colourBy = 'outcome'; restyle(); drawLegend(); } }), ' outcome ']),
      el('label', null, [el('input', { type: 'radio', name: 'colour', id: 'colour-share', onchange: () => { colourBy = 'share'; restyle(); drawLegend(); } }), ' payout share']),
    ]);
    modes.querySelector(colourBy === 'share' ? '#colour-share' : '#colour-outcome').checked = true;
    legend.append(modes);
    if (colourBy === 'share') {
      legend.append(el('div', null, [el('span', { cls: 'ramp' }), ' 0 → 100 % of the insured sum']),
        el('div', null, [el('span', { cls: 'swatch', style: 'background:#d5d5d5' }), 'no payout computed']));
    } else {
      for (const cat of Object.keys(STATE_COLOUR)) {
        if (!counts[cat]) continue;
        legend.append(el('div', null, [el('span', { cls: 'swatch', style: 'background:' + STATE_COLOUR[cat] }), STATE_LABEL[cat] + ': ' + intf(counts[cat])]));
      }
    }
    const buttons = el('div', { style: 'margin-top:4px' }, [
      el('button', { id: 'view-bulk', text: 'season view', onclick: () => bulk && map.fitBounds(bulk) }), ' ',
      el('button', { id: 'view-all', text: 'all fields', onclick: () => whole && map.fitBounds(whole) }),
    ]);
    legend.append(buttons);
    if (refusedDrawn) legend.append(el('div', null, [el('span', { cls: 'swatch', style: 'border:1.5px dashed #555;background:none' }), 'refused by the import: ' + intf(refusedDrawn)]));
    if (outside) legend.append(el('div', { cls: 'muted', text: outside + ' field(s) lie outside the season view: “all fields” shows them' }));
  }
  drawLegend();

  // ---- table --------------------------------------------------------------------------------
  const COLUMNS = [
    ['src', "insurer's ID", (i) => F.src[i] || '', 's'],
    ['id', 'field', (i) => F.id[i], 's'],
    ['crop', 'crop', (i) => F.crop[i] || '', 's'],
    ['outcome', 'outcome', (i) => STATE_LABEL[category(i)] || F.state[i], 's'],
    ['reason', 'reason', (i) => F.reason[i], 's'],
    ['index', 'index', (i) => F.index[i], 'n', (v) => fix(v, 4)],
    ['terms', 'trigger / exit', (i) => termsText(i), 's'],
    ['share', 'share', (i) => share(i), 'n', (v) => (v === null ? '–' : (100 * v).toFixed(2) + ' %')],
    ['amount', 'amount', (i) => F.cents[i], 'n', (v, i) => (v === null || v === undefined ? '–' : money(v) + ' ' + (F.cur[i] || ''))],
    ['dha', 'damaged ha', (i) => F.dha[i], 'n', (v) => fix(v, 2)],
    ['ddate', 'damage date', (i) => (F.terms[i] && F.terms[i][6]) || '', 's'],
    ['cov', 'coverage', (i) => F.cov[i], 'n', (v) => (v === null ? '–' : (100 * v).toFixed(0) + ' %')],
  ];
  function termsText(i) {
    const t = F.terms[i];
    if (!t || !t[0]) return '';
    if (t[3] !== null && t[3] !== undefined) return 'P' + fix(t[3], 0) + ' / P' + fix(t[4], 0);
    return fix(t[1], 3) + ' / ' + fix(t[2], 3);
  }
  const tableSection = el('section', { id: 'fields' });
  const search = el('input', { type: 'search', id: 'filter-text', placeholder: 'ID, crop, reason…' });
  const outcomeSel = el('select', { id: 'filter-outcome' }, [el('option', { value: '', text: 'every outcome' }),
    ...Object.keys(STATE_COLOUR).map((k) => el('option', { value: k, text: STATE_LABEL[k] }))]);
  const inView = el('input', { type: 'checkbox', id: 'filter-view' });
  const rowCount = el('span', { id: 'row-count' });
  const pager = el('span', { cls: 'pager' });
  tableSection.append(el('h2', { text: D.large ? 'Fields: the ' + intf(D.large.shown) + ' largest payouts' : 'Fields (every imported row of the insurer’s file)' }),
    el('div', { cls: 'tools' }, [search, outcomeSel, el('label', null, [inView, ' only fields in the map view']), rowCount, pager]));
  const thead = el('thead');
  const tbody = el('tbody', { id: 'rows' });
  const table = el('table', { cls: 'grid', id: 'field-table' }, [thead, tbody]);
  tableSection.append(el('div', { cls: 'scroll' }, [table]));
  document.body.append(tableSection);
  let sortKey = 'amount', sortDir = -1, page = 0, shown = [];
  const headRow = el('tr');
  for (const col of COLUMNS) {
    headRow.append(el('th', { 'data-key': col[0], text: col[1], onclick: () => { sortDir = sortKey === col[0] ? -sortDir : (col[3] === 'n' ? -1 : 1); sortKey = col[0]; page = 0; refresh(); } }));
  }
  thead.append(headRow);
  function matches(i, text, outcome, bounds) {
    if (outcome && category(i) !== outcome) return false;
    if (bounds) { const r = F.rings[i]; if (!r || !r.length || !bounds.contains(L.latLng(r[0][1], r[0][0]))) return false; }
    if (!text) return true;
    return [F.src[i], F.id[i], F.crop[i], F.reason[i], F.region[i]].some((v) => v && String(v).toLowerCase().includes(text));
  }
  function refresh() {
    const text = search.value.trim().toLowerCase();
    const outcome = outcomeSel.value;
    const bounds = inView.checked ? map.getBounds() : null;
    shown = [];
    for (let i = 0; i < N; i++) {
      const ok = matches(i, text, outcome, bounds);
      visible[i] = ok || bounds ? 1 : 0;
      if (ok) shown.push(i);
    }
    const col = COLUMNS.find((c) => c[0] === sortKey);
    const key = col[2];
    shown.sort((a, b) => {
      const x = key(a), y = key(b);
      if (x === y) return a - b;
      if (x === null || x === undefined || x === '') return 1;
      if (y === null || y === undefined || y === '') return -1;
      return (x < y ? -1 : 1) * sortDir;
    });
    for (const th of headRow.children) th.className = th.dataset.key === sortKey ? (sortDir > 0 ? 'sorted-asc' : 'sorted-desc') : '';
    rowCount.textContent = intf(shown.length) + ' of ' + intf(N) + ' fields';
    rowCount.dataset.count = String(shown.length);
    if (!bounds) restyle();
    drawRows();
  }
  function drawRows() {
    const pages = Math.max(1, Math.ceil(shown.length / PAGE_ROWS));
    page = Math.min(page, pages - 1);
    tbody.replaceChildren();
    for (const i of shown.slice(page * PAGE_ROWS, (page + 1) * PAGE_ROWS)) {
      const tr = el('tr', { 'data-field': F.id[i], onclick: () => select(i, true) });
      if (i === selected) tr.className = 'selected';
      for (const col of COLUMNS) {
        const v = col[2](i);
        tr.append(el('td', { cls: col[3] === 'n' ? 'num' : '', text: col[4] ? col[4](v, i) : v }));
      }
      tbody.append(tr);
    }
    pager.replaceChildren(
      el('button', { text: '‹', onclick: () => { page = Math.max(0, page - 1); drawRows(); } }),
      ' page ' + (page + 1) + ' of ' + pages + ' ',
      el('button', { text: '›', onclick: () => { page = Math.min(pages - 1, page + 1); drawRows(); } }));
  }
  search.addEventListener('input', () => { page = 0; refresh(); });
  outcomeSel.addEventListener('change', () => { page = 0; refresh(); });
  inView.addEventListener('change', () => { page = 0; refresh(); });
  map.on('moveend', () => { if (inView.checked) refresh(); });

  // ---- evidence -----------------------------------------------------------------------------
  function select(i, fromTable) {
    const before = selected;
    selected = i;
    if (before >= 0 && layers[before]) layers[before].setStyle(style(before));
    if (layers[i]) {
      layers[i].setStyle(style(i));
      layers[i].bringToFront();
      if (fromTable) map.fitBounds(layers[i].getBounds(), { maxZoom: 15 });
    }
    if (!fromTable) {
      const at = shown.indexOf(i);
      if (at >= 0) page = Math.floor(at / PAGE_ROWS);
    }
    drawRows();
    const row = tbody.querySelector('tr.selected');
    if (row && !fromTable) row.scrollIntoView({ block: 'nearest' });
    showEvidence(i);
  }

  function showEvidence(i) {
    const e = D.evidence[F.id[i]];
    if (e && !e.abs) { let d = 0; e.days = e.days.map((step) => (d += step)); e.abs = true; }  // differences → days
    evidence.replaceChildren();
    evidence.dataset.field = F.id[i];
    evidence.append(el('h2', { id: 'ev-title', text: (F.src[i] || '–') }),
      el('div', { cls: 'muted', text: 'field ' + F.id[i] + ' · ' + (F.crop[i] || '?') + ' · region ' + (F.region[i] || '?') + ' · ' + fix(F.area[i], 2) + ' ha' }),
      el('p', null, [el('b', { id: 'ev-outcome', text: STATE_LABEL[category(i)] || F.state[i] }),
        F.reason[i] ? ' — ' + F.reason[i] : '', F.detail[i] ? ': ' + F.detail[i] : '']));
    if (F.note[i]) evidence.append(el('p', { cls: 'muted', text: 'import note: ' + F.note[i] }));
    if (!e) { evidence.append(el('p', { cls: 'muted', text: 'No valid output to show (yet).' })); return; }
    if (e.days.length) evidence.append(chart(i, e));
    const d = e.damage;
    if (e.dmap) evidence.append(damageMap(e.dmap, d));
    else if (d) evidence.append(el('p', { text: 'pixel damage: ' + fix(100 * d.damaged_fraction, 1) + ' % (' + fix(d.damaged_ha, 2) + ' ha)' }));
    if (e.events && e.events.length) {
      evidence.append(el('div', null, [el('b', { text: 'Events' })]),
        el('ul', null, e.events.map((ev) => el('li', { text: ev.type + ' ' + (ev.date || (ev.start_date + ' … ' + ev.end_date)) }))));
    }
    if (e.payout) evidence.append(arithmetic(e.payout));
    const c = e.coverage || {};
    const m = e.metrics || {};
    evidence.append(el('table', null, [
      row('raster coverage', c.raster_coverage !== undefined ? fix(100 * c.raster_coverage, 1) + ' %' : '–'),
      row('observed sowing→harvest dates', c.observed_share !== undefined ? fix(100 * c.observed_share, 1) + ' %' : '–'),
      row('smoothing λ', m.lambda !== undefined ? fix(m.lambda, 2) + ' (' + (m.lambda_mode || '') + ')' : '–'),
      row('peak NDVI', m.peak_ndvi !== undefined && m.peak_ndvi !== null ? fix(m.peak_ndvi, 3) + ' on ' + (m.peak_date || '?') : '–'),
      row('season start → end', (m.sos_date || '–') + ' → ' + (m.eos_date || '–')),
      row('∫NDVI sowing → harvest', m.integral_ndvi_days !== undefined && m.integral_ndvi_days !== null ? fix(m.integral_ndvi_days, 1) + ' NDVI·days' : '–'),
    ]));
  }
  function row(k, v, id) { return el('tr', null, [el('td', { cls: 'muted', text: k }), el('td', id ? { id: id, text: v } : { text: v })]); }

  function arithmetic(p) {
    const box = el('div', { id: 'ev-payout' });
    const pct = p.trigger_percentile !== null && p.trigger_percentile !== undefined;
    box.append(el('div', null, [el('b', { text: 'Contract and payout' })]));
    box.append(el('table', null, [
      row('index', p.index + (p.terms ? ' (' + p.terms + ' terms)' : '')),
      row('index value', fix(p.index_value, 6), 'ev-index'),
      row('trigger', fix(p.trigger, 6) + (pct ? ' (percentile ' + fix(p.trigger_percentile, 1) + ')' : '')),
      row('exit', fix(p.exit, 6) + (pct ? ' (percentile ' + fix(p.exit_percentile, 1) + ')' : '')),
      row('insured sum', money(p.insured_sum_cents) + ' ' + p.currency),
      ...(pct ? [row('this season among history', 'percentile ' + fix(p.percentile, 1) + ' of ' + p.history_years + ' years')] : []),
    ]));
    const raw = (p.index_value - p.trigger) / (p.exit - p.trigger);
    const lines = [
      'fraction = clip((index − trigger) / (exit − trigger), 0, 1)',
      '         = clip((' + fix(p.index_value, 6) + ' − ' + fix(p.trigger, 6) + ') / (' + fix(p.exit, 6) + ' − ' + fix(p.trigger, 6) + '), 0, 1)',
      '         = clip(' + (isFinite(raw) ? raw.toFixed(6) : '–') + ', 0, 1) = ' + fix(p.fraction, 6) + ' (recorded, 6 decimals, half up)',
      'amount   = ' + intf(p.insured_sum_cents) + ' cents × ' + fix(p.fraction, 6) + ' = ' + intf(p.amount_cents) + ' cents (half up)',
      '         = ' + money(p.amount_cents) + ' ' + p.currency,
    ];
    box.append(el('div', { cls: 'arith', id: 'ev-arith', text: lines.join('\n') }));
    box.append(el('span', { id: 'ev-amount-cents', hidden: '', text: String(p.amount_cents) }));
    return box;
  }

  function chart(i, e) {
    const W = 560, H = 260, L0 = 36, R0 = 10, T0 = 10, B0 = 34;
    const days = e.days;
    const sow = F.sow[i] ? isoDay(F.sow[i]) : null, harv = F.harv[i] ? isoDay(F.harv[i]) : null;
    const x0 = Math.min(days[0], sow === null ? days[0] : sow), x1 = Math.max(days[days.length - 1], harv === null ? 0 : harv);
    const X = (d) => L0 + (W - L0 - R0) * (d - x0) / Math.max(1, x1 - x0);
    const Y = (v) => T0 + (H - T0 - B0) * (1 - Math.max(-0.1, Math.min(1, v)) / 1.0);
    const s = svg('svg', { class: 'chart', id: 'ev-chart', width: W, height: H, viewBox: '0 0 ' + W + ' ' + H });
    const g = svg('g', { class: 'grid' });
    for (let v = 0; v <= 1.0001; v += 0.2) {
      g.append(svg('line', { x1: L0, x2: W - R0, y1: Y(v), y2: Y(v) }));
      const t = svg('text', { x: 4, y: Y(v) + 4 }); t.textContent = v.toFixed(1); s.append(t);
    }
    s.append(g);
    for (let d = x0; d <= x1; d++) {
      const iso = dayIso(d);
      if (iso.endsWith('-01')) { const t = svg('text', { x: X(d) - 8, y: H - 4 }); t.textContent = iso.slice(5, 7) + '/' + iso.slice(2, 4); s.append(t); }
    }
    if (sow !== null && harv !== null) {
      s.append(svg('rect', { x: X(sow), y: T0, width: Math.max(0, X(harv) - X(sow)), height: H - T0 - B0, fill: '#f3efd9', 'data-role': 'window' }));
    }
    const band = [], upper = [], lower = [];
    days.forEach((d, k) => { if (e.bl[k] !== null && e.sd[k] !== null) { upper.push(X(d) + ',' + Y(e.bl[k] + e.sd[k])); lower.unshift(X(d) + ',' + Y(e.bl[k] - e.sd[k])); } });
    if (upper.length) s.append(svg('polygon', { points: upper.concat(lower).join(' '), fill: '#9ec5e8', opacity: 0.45, 'data-role': 'spread' }));
    const line = (vals, attrs) => {
      const pts = []; days.forEach((d, k) => { if (vals[k] !== null) pts.push(X(d) + ',' + Y(vals[k])); });
      if (pts.length > 1) s.append(svg('polyline', Object.assign({ points: pts.join(' '), fill: 'none' }, attrs)));
    };
    line(e.bl, { stroke: '#2c6fb7', 'stroke-dasharray': '5 3', 'stroke-width': 1.5, 'data-role': 'baseline' });
    line(e.sm, { stroke: '#1b7f3b', 'stroke-width': 2.2, 'data-role': 'smooth' });
    let clear = 0, cloudy = 0;
    days.forEach((d, k) => {
      if (e.obs[k] !== null) { clear++; s.append(svg('circle', { cx: X(d), cy: Y(e.obs[k]), r: 3, fill: '#111', 'data-role': 'clear' })); }
      else { cloudy++; s.append(svg('circle', { cx: X(d), cy: Y(-0.05), r: 3, fill: 'none', stroke: '#999', 'data-role': 'cloudy' })); }
    });
    let marks = 0;
    const mark = (iso, colour, label) => {
      const d = isoDay(iso); if (!isFinite(d)) return;
      s.append(svg('line', { x1: X(d), x2: X(d), y1: T0, y2: H - B0, stroke: colour, 'stroke-width': 1.5, 'data-role': 'event' }));
      const t = svg('text', { x: X(d) + 3, y: T0 + 10 + 12 * marks++, fill: colour }); t.textContent = label; s.append(t);
    };
    for (const ev of e.events || []) if (ev.date) mark(ev.date, '#b03a2e', ev.type.replace('_', ' '));
    if (e.damage && e.damage.main_damage_date) mark(e.damage.main_damage_date, '#d35400', 'damage');
    const wrap = el('div', null, [s, el('div', { cls: 'muted', id: 'ev-obs', text: clear + ' clear and ' + cloudy + ' cloudy acquisitions · ● observed NDVI, ○ cloudy (no value) · green: smoothed curve · blue: baseline ± spread · shaded: sowing → harvest' })]);
    return wrap;
  }

  function damageMap(m, d) {
    const scale = Math.max(2, Math.min(12, Math.floor(240 / Math.max(m.w, m.h))));
    const c = el('canvas', { cls: 'dmap', id: 'ev-dmap', width: m.w * scale, height: m.h * scale });
    const ctx = c.getContext('2d');
    let damaged = 0;
    let at = 0;
    for (let j = 0; j + 1 < m.runs.length; j += 2) {
      const v = m.runs[j], n = m.runs[j + 1];
      if (v) {
        if (v === 2) damaged += n;
        ctx.fillStyle = v === 2 ? '#d73027' : '#78be6e';
        for (let q = at; q < at + n; q++) ctx.fillRect((q % m.w) * scale, Math.floor(q / m.w) * scale, scale, scale);
      }
      at += n;
    }
    const text = d ? damaged + ' damaged pixels · ' + fix(100 * d.damaged_fraction, 1) + ' % · ' + fix(d.damaged_ha, 2) + ' ha' + (d.main_damage_date ? ' · main damage date ' + d.main_damage_date : '') : damaged + ' damaged pixels';
    return el('div', null, [el('div', null, [el('b', { text: 'Pixel damage map' })]), c, el('div', { cls: 'muted', id: 'ev-damage', text: text + ' (red damaged, green undamaged, north up, 10 m pixels)' })]);
  }

  // ---- explained, refused, units, reconciliation, audit -------------------------------------
  function groups(title, id, items, describe, counts) {
    const sec = el('section', { id: id }, [el('h2', { text: title })]);
    const by = {};
    for (const it of items) (by[it.reason] = by[it.reason] || []).push(it);
    const reasons = Object.keys(by).sort();
    if (!reasons.length) sec.append(el('p', { cls: 'muted', text: 'none' }));
    for (const reason of reasons) {
      const list = el('ul');
      const total = counts && counts[reason] !== undefined ? counts[reason] : by[reason].length;
      for (const it of by[reason].slice(0, 500)) list.append(el('li', { text: describe(it) }));
      if (total > Math.min(500, by[reason].length)) list.append(el('li', { cls: 'muted', text: '… ' + (total - Math.min(500, by[reason].length)) + ' more in report.json' }));
      sec.append(el('details', { 'data-reason': reason }, [el('summary', { text: reason + ' (' + total + ')' }), list]));
    }
    document.body.append(sec);
  }
  groups('Explained fields, by reason', 'explained', D.explained, (it) => (it.source_id || '–') + ' (' + it.field_id + ')' + (it.detail ? ': ' + it.detail : ''), D.explained_counts);
  groups('Rows refused by the import, by reason', 'refused', D.refused, (it) => 'row ' + it.row + ': ' + (it.source_id === null || it.source_id === undefined ? '(no ID)' : it.source_id) + (it.detail ? ' — ' + it.detail : ''));

  if (D.units && D.units.length) {
    const sec = el('section', { id: 'units' }, [el('h2', { text: 'Area units' })]);
    const t = el('table', { cls: 'grid' });
    t.append(el('thead', null, [el('tr', null, ['unit', 'status', 'fields assessed', 'index', 'percentile', 'share', 'amount'].map((h) => el('th', { text: h })))]));
    const b = el('tbody');
    for (const u of D.units) {
      b.append(el('tr', null, [u.unit_id, u.status + (u.reason ? ' (' + u.reason + ')' : ''), u.n_assessed + ' / ' + u.n_fields, fix(u.index_value, 4),
        fix(u.percentile, 1), u.fraction === null ? '–' : (100 * u.fraction).toFixed(2) + ' %', u.amount_cents === null ? '–' : money(u.amount_cents) + ' ' + u.currency].map((v) => el('td', { text: v }))));
    }
    t.append(b);
    sec.append(t);
    document.body.append(sec);
  }

  const rec = el('section', { id: 'reconcile' }, [el('h2', { text: "Totals reconciled to the insurer's rows" })]);
  const C = R.counts;
  const recLines = [
    ["rows in the insurer's file", R.insurer_rows.total],
    ['  refused by the import', R.insurer_rows.refused],
    ['  imported fields', R.insurer_rows.imported],
    ['    assessed, paid', R.paid_fields],
    ['    assessed, not paid', C.assessed - R.paid_fields],
    ['    not assessable', C.not_assessable],
    ['    insufficient data', C.insufficient_data],
    ['    failed / given up', C.failed + C.given_up],
    ['    not done yet', C.remaining],
  ];
  let sumCents = 0;
  for (let i = 0; i < N; i++) if (F.cents[i]) sumCents += F.cents[i];
  const recTable = el('table', null, recLines.map(([k, v]) => row(k, intf(v))));
  rec.append(recTable);
  const ok = R.insurer_rows.total === R.insurer_rows.refused + R.insurer_rows.imported &&
    R.insurer_rows.imported === C.assessed + C.not_assessable + C.insufficient_data + C.failed + C.given_up + C.remaining;
  const totalCents = paidCents.reduce((a, [, c]) => a + c, 0);
  rec.append(el('p', { id: 'reconcile-check', text: (ok ? 'The rows add up.' : 'The rows do NOT add up.') + ' Sum of the paid fields in the table: ' +
    money(sumCents) + (sumCents === totalCents ? ' = the total payout.' : ' ≠ the total payout ' + money(totalCents) + '.') }));
  document.body.append(rec);

  const audit = el('details', { id: 'audit' }, [el('summary', { text: 'Audit: the season (scenes per date, masked classes, versions), settings and files' }),
    el('pre', { cls: 'audit', text: JSON.stringify({ season: D.audit.season, settings: D.settings, code_version: D.code_version, files: D.audit.files }, null, 1) })]);
  document.body.append(el('section', null, [audit]));

  refresh();
  // for tests and for the curious: what the page drew
  window.seasonPage = {
    features: features, fields: N, readyMs: performance.now(),
    onMap: () => layers.filter((l) => l && map.hasLayer(l)).length,
    pointOf: (id) => { const l = layers[F.id.indexOf(id)]; const p = map.latLngToContainerPoint(l.getCenter()); return [p.x, p.y]; },
  };
  document.body.dataset.ready = '1';
})();
