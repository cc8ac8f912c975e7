// ldapgate admin console. Every action is a call to the admin API
// (/auth/v4/...) with the browser's own session cookie, from this origin;
// the page never holds a token. DOM is built with textContent only:
// directory data (names, notes, DNs) is never parsed as HTML.
'use strict';

const $ = (sel, root) => (root || document).querySelector(sel);
const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
const body = document.body;
const roles = JSON.parse(body.dataset.roles || '[]');

// el builds an element: attrs are properties (on*, hidden, ...) except
// data-*/aria-*/for, which are attributes; children are nodes or text.
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('data-') || k.startsWith('aria-') || k === 'for' || k === 'role' || k === 'scope') e.setAttribute(k, v);
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e[k] = v;
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

class APIError extends Error {
  constructor(status, err) {
    super((err && err.msg) || ('HTTP ' + status));
    this.status = status;
    this.code = err && err.code;
    this.value = err && err.value;
  }
}

// api calls the admin API. Bodies are JSON (SPEC §5: a browser's
// state-changing call must be application/json from this origin).
async function api(method, path, payload) {
  const opts = {method, credentials: 'same-origin', headers: {'Accept': 'application/json'}};
  if (method !== 'GET') {
    opts.headers['Content-Type'] = 'application/json';
    if (payload !== undefined) opts.body = JSON.stringify(payload);
  }
  const r = await fetch(path, opts);
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { /* not JSON */ }
  if (r.status === 401) { location.href = '/login?rd=' + encodeURIComponent(location.pathname + location.search); }
  if (!r.ok) throw new APIError(r.status, data && data.error);
  return data;
}

function showError(err) {
  const p = $('#error');
  p.textContent = err ? (err.message || String(err)) : '';
  p.hidden = !err;
  if (err) p.scrollIntoView({block: 'nearest'});
}
function setStatus(text) { $('#status').textContent = text || ''; }

// guard runs an action, shows its failure, and keeps the button disabled
// while it runs so a double click cannot send it twice.
async function guard(button, fn) {
  if (button) button.disabled = true;
  showError(null);
  try { return await fn(); } catch (e) { showError(e); return undefined; } finally { if (button) button.disabled = false; }
}

function fmtTime(s) {
  if (!s || s.startsWith('0001-')) return '';
  const d = new Date(s);
  return isNaN(d) ? s : d.toLocaleString();
}

const stateNames = {active: 'Active', blocked: 'Blocked', blocked_in_ldap: 'Blocked in LDAP'};
const typeNames = {ldap: 'LDAP', active_directory: 'Active Directory', freeipa: 'FreeIPA'};

// liveText is a connection's live-change stream (SPEC §13), when the
// server reports one.
function liveText(live) {
  if (!live || !live.state) return '—';
  return live.state + (live.last_event_at && !live.last_event_at.startsWith('0001-') ? ', last event ' + fmtTime(live.last_event_at) : '');
}

function countsText(counts) {
  const parts = Object.entries(counts || {}).filter(([, n]) => n > 0).map(([k, n]) => k + ' ' + n);
  return parts.length ? parts.join(', ') : 'no changes';
}

// confirm opens the page's confirmation dialog (keyboard friendly, unlike
// window.confirm, and findable by tests) and resolves to true on OK.
function confirmDialog(title, text, okLabel, danger) {
  const d = $('#confirm-dialog');
  $('#confirm-title').textContent = title;
  $('#confirm-text').textContent = text;
  const ok = $('#confirm-ok');
  ok.textContent = okLabel;
  ok.className = danger ? 'danger' : '';
  d.returnValue = '';
  return new Promise(resolve => {
    const onClose = () => {
      // The close event of an earlier answer is queued, and can arrive
      // after this call has shown the dialog again: only a closed dialog
      // answers (otherwise a quick second confirmation is lost).
      if (d.open) return;
      d.removeEventListener('close', onClose);
      resolve(d.returnValue === 'ok');
    };
    d.addEventListener('close', onClose);
    d.showModal();
    $('#confirm-cancel').focus();
  });
}

// ---- synchronization (shared by the pages that start one) ----

function runSummary(run) {
  const dl = el('dl', {className: 'summary', id: 'sync-summary'});
  const add = (k, v) => dl.append(el('dt', {}, k), el('dd', {}, v));
  add('Result', el('span', {id: 'sync-result', className: run.result === 'success' || run.result === 'dry_run' ? 'ok' : 'bad'}, run.result));
  if (run.error) add('Reason', run.error);
  add('Users read', String(run.directory_users || 0));
  add(run.dry_run ? 'Planned changes' : 'Changes', el('span', {id: 'sync-counts'}, countsText(run.counts)));
  add('Finished', fmtTime(run.finished_at));
  return dl;
}

// startSync runs a sync (or dry run) of directory id and shows its progress
// and outcome in out. A refused run explains the safety check and offers
// a forced run behind a confirmation.
async function startSync(id, out, opts) {
  opts = opts || {};
  const q = opts.dryRun ? '?dry_run=true' : (opts.force ? '?force=true' : '');
  out.replaceChildren(el('p', {id: 'sync-progress', role: 'status'},
    el('progress', {'aria-label': 'Synchronization running'}),
    opts.dryRun ? 'Dry run running…' : 'Synchronization running… it can take minutes on a large directory.'));
  const started = Date.now();
  const tick = setInterval(() => {
    const p = $('#sync-progress', out);
    if (p) p.lastChild.textContent = (opts.dryRun ? 'Dry run' : 'Synchronization') + ' running… ' + Math.round((Date.now() - started) / 1000) + ' s';
  }, 1000);
  let run;
  try {
    run = await api('POST', '/auth/v4/ldap/' + id + '/sync' + q);
  } catch (e) {
    out.replaceChildren(el('p', {className: 'error', role: 'alert', id: 'sync-error'}, 'Synchronization failed: ' + e.message));
    return null;
  } finally {
    clearInterval(tick);
  }
  const parts = [el('h3', {}, opts.dryRun ? 'Dry run finished' : 'Synchronization finished'), runSummary(run)];
  if (run.result === 'refused' && !opts.dryRun) {
    parts.push(el('p', {id: 'refused-help'},
      'The safety check refused this run: it would block more of the directory\'s users than the connection allows ' +
      '(max_block_fraction, 20% by default), or the directory answered with no users at all. ' +
      'This usually means a wrong Users DN, filter or group mapping. Check them; if the change is intended, force the run.'));
    parts.push(el('div', {className: 'buttons'}, el('button', {
      type: 'button', id: 'force-sync', className: 'danger',
      onclick: async () => {
        if (await confirmDialog('Force synchronization', 'Run the synchronization without the safety check? Users missing from the directory will be blocked.', 'Force synchronization', true)) {
          await startSync(id, out, {force: true});
          if (opts.after) opts.after();
        }
      },
    }, 'Force synchronization…')));
  }
  if (run.id) parts.push(el('p', {}, el('a', {id: 'open-run', href: '/admin/connections/' + id + '/runs/' + run.id}, 'Open this run\'s changes')));
  out.replaceChildren(...parts);
  if (opts.after) opts.after();
  return run;
}

// ---- preview ----

async function showPreview(id, out) {
  const data = await api('GET', '/auth/v4/ldap/' + id + '/preview');
  const rows = data.list.map(r => el('tr', {},
    el('td', {}, r.username), el('td', {}, r.email), el('td', {}, r.role || ''),
    el('td', {}, r.exists ? 'yes' : 'no'), el('td', {}, r.action + (r.reason ? ' (' + r.reason + ')' : ''))));
  out.replaceChildren(el('table', {id: 'preview-table'},
    el('caption', {}, 'Users for synchronization: ' + data.size),
    el('thead', {}, el('tr', {}, ['Username', 'E-mail', 'Role', 'On the platform', 'Planned action'].map(h => el('th', {scope: 'col'}, h)))),
    el('tbody', {}, rows)));
}

// download fetches the CSV through a real link, so the browser saves the
// server's file (Content-Disposition) as it is.
function downloadCSV(id) {
  const a = el('a', {href: '/auth/v4/ldap/' + id + '/preview?format=csv', download: 'ldap-' + id + '-preview.csv', hidden: true});
  body.append(a);
  a.click();
  a.remove();
}

// ---- the connection form (add flow and connection page) ----

function fillRoleSelect(select, selected) {
  for (const r of roles) select.append(el('option', {value: r, selected: r === selected}, r));
}

let ruleSeq = 0;
function addRule(role, dn) {
  const n = ++ruleSeq;
  const row = el('div', {className: 'rule', 'data-rule': String(n)});
  const sel = el('select', {id: 'rule-role-' + n, className: 'rule-role'});
  fillRoleSelect(sel, role || roles[0]);
  const input = el('input', {id: 'rule-dn-' + n, className: 'rule-dn', value: dn || '', placeholder: 'cn=admins,ou=groups,dc=example,dc=com', spellcheck: false});
  row.append(
    el('label', {for: sel.id}, 'Role ' + n), sel,
    el('label', {for: input.id}, 'Group DN ' + n), input,
    el('button', {type: 'button', className: 'secondary', 'aria-label': 'Remove rule ' + n, onclick: () => { row.remove(); }}, 'Remove'));
  $('#rules').append(row);
  return row;
}

function scheduleExpr() {
  const kind = $('input[name=kind]:checked').value;
  const t = $('#f-time').value || '03:00';
  switch (kind) {
    case 'hourly': return 'hourly';
    case 'daily': return 'daily ' + t;
    case 'weekly': return 'weekly ' + $('#f-day').value + ' ' + t;
    default: return $('#f-cron').value.trim();
  }
}

function setSchedule(expr) {
  const f = (expr || '').trim().split(/\s+/);
  let kind = 'hourly';
  const k = (f[0] || '').toLowerCase();
  if (k === 'daily' && f.length === 2) { kind = 'daily'; $('#f-time').value = f[1].padStart(5, '0'); } else if (k === 'weekly' && f.length === 3) {
    kind = 'weekly';
    $('#f-day').value = f[1].toLowerCase().slice(0, 3);
    $('#f-time').value = f[2].padStart(5, '0');
  } else if (k && k !== 'hourly') { kind = 'cron'; $('#f-cron').value = expr; }
  $('#kind-' + kind).checked = true;
}

function showKindFields() {
  const kind = $('input[name=kind]:checked').value;
  for (const e of $$('[data-kinds]')) e.hidden = !e.dataset.kinds.split(' ').includes(kind);
}

let scheduleTimer = null;
function refreshNextRuns() {
  showKindFields();
  clearTimeout(scheduleTimer);
  scheduleTimer = setTimeout(async () => {
    const expr = scheduleExpr();
    const list = $('#next-runs');
    const errP = $('#schedule-error');
    errP.hidden = true;
    if (!expr) { list.replaceChildren(); return; }
    try {
      const data = await api('GET', '/auth/v4/ldap/schedule?expr=' + encodeURIComponent(expr));
      list.replaceChildren(...data.next.map(t => el('li', {}, el('time', {dateTime: t}, t.replace('T', ' ')))));
      list.dataset.expr = expr;
    } catch (e) {
      list.replaceChildren();
      errP.textContent = e.message;
      errP.hidden = false;
    }
  }, 150);
}

function settingsPayload(withPassword) {
  const ssl = $('#f-ssl').checked;
  const host = $('#f-host').value.trim();
  const port = $('#f-port').value.trim();
  const p = {
    name: $('#f-name').value.trim(),
    type: $('input[name=type]:checked').value,
    urls: host ? [(ssl ? 'ldaps://' : 'ldap://') + host + (port ? ':' + port : '')] : [],
    base_dn: $('#f-base-dn').value.trim(),
    bind_dn: $('#f-bind-dn').value.trim(),
    users_dn: $('#f-users-dn').value.trim(),
    groups_dn: $('#f-groups-dn').value.trim(),
    group_name_attribute: $('#f-group-attr').value,
    email_attribute: $('#f-email-attr').value.trim(),
    domain: $('#f-domain').value.trim(),
    note: $('#f-note').value,
  };
  const pw = $('#f-password').value;
  if (withPassword && pw) p.bind_password = pw;
  return p;
}

function rulesPayload() {
  const mapping = {};
  for (const row of $$('#rules .rule')) {
    const dn = $('.rule-dn', row).value.trim();
    if (!dn) continue;
    const role = $('.rule-role', row).value;
    (mapping[role] = mapping[role] || []).push(dn);
  }
  const auto = $('#f-auto').checked;
  return {
    role_mapping: mapping,
    default_role: $('#f-default-role').value,
    schedule: auto ? scheduleExpr() : '',
    auto_sync: auto,
  };
}

function fillForm(d) {
  $('#f-name').value = d.name;
  const t = $('input[name=type][value="' + d.type + '"]');
  if (t) t.checked = true;
  const u = (d.urls || [])[0] || '';
  const m = /^(ldaps?):\/\/([^/:]+|\[[^\]]+\])(?::(\d+))?/i.exec(u);
  if (m) {
    $('#f-ssl').checked = m[1].toLowerCase() === 'ldaps';
    $('#f-host').value = m[2];
    $('#f-port').value = m[3] || '';
  }
  $('#f-base-dn').value = d.base_dn || '';
  $('#f-bind-dn').value = d.bind_dn || '';
  $('#f-users-dn').value = d.users_dn || '';
  $('#f-groups-dn').value = d.groups_dn || '';
  $('#f-group-attr').value = d.group_name_attribute || '';
  if ($('#f-group-attr').value !== (d.group_name_attribute || '')) {
    // memberof in another case: keep what the server has.
    $('#f-group-attr').append(el('option', {value: d.group_name_attribute, selected: true}, d.group_name_attribute));
  }
  $('#f-email-attr').value = d.email_attribute || '';
  $('#f-domain').value = d.domain || '';
  $('#f-note').value = d.note || '';
  $('#rules').replaceChildren();
  for (const [role, dns] of Object.entries(d.role_mapping || {})) for (const dn of dns) addRule(role, dn);
  $('#f-default-role').value = d.default_role || '';
  $('#f-auto').checked = !!d.schedule && d.auto_sync !== false;
  setSchedule(d.schedule || 'hourly');
}

function initConnectionForm() {
  fillRoleSelect($('#f-default-role'), '');
  $('#add-group').addEventListener('click', () => { $('.rule-dn', addRule()).focus(); });
  for (const e of $$('input[name=kind], #f-day, #f-time, #f-cron')) {
    e.addEventListener('input', refreshNextRuns);
    e.addEventListener('change', refreshNextRuns);
  }
  $('#f-ssl').addEventListener('change', () => {
    const port = $('#f-port');
    if (!port.value || port.value === '389' || port.value === '636') port.value = $('#f-ssl').checked ? '636' : '389';
  });
}

// ---- pages ----

const pages = {};

pages.connections = async function () {
  const tbody = $('#connections tbody');
  const noteDialog = $('#note-dialog');
  let current = null;
  noteDialog.addEventListener('close', () => {
    if (noteDialog.returnValue !== 'ok' || !current) return;
    const c = current;
    guard(null, async () => {
      await api('PATCH', '/auth/v4/ldap/' + c.id, {note: $('#note-text').value});
      setStatus('Note of ' + c.name + ' saved.');
      await load();
    });
  });

  async function load() {
    const data = await api('GET', '/auth/v4/ldap');
    $('#empty').hidden = data.size > 0;
    tbody.replaceChildren(...data.list.map(row));
  }

  function row(c) {
    const counts = Object.entries(c.users || {}).filter(([, n]) => n > 0).map(([s, n]) => (stateNames[s] || s) + ' ' + n);
    const last = c.last_run;
    const fromFile = c.managed === 'config';
    const menu = el('details', {className: 'menu'},
      el('summary', {'aria-label': 'Actions for ' + c.name}, '⋯'),
      el('div', {className: 'menu-items'},
        el('a', {href: '/admin/connections/' + c.id}, 'Edit'),
        el('button', {type: 'button', onclick: async () => {
          menu.open = false;
          await startSync(c.id, $('#sync-output'), {after: () => load().catch(showError)});
        }}, 'Synchronize'),
        el('button', {type: 'button', disabled: fromFile, title: fromFile ? 'Declared in the config file' : '', onclick: () => {
          menu.open = false;
          current = c;
          $('#note-text').value = c.note || '';
          noteDialog.returnValue = '';
          noteDialog.showModal();
        }}, 'Note'),
        el('button', {type: 'button', disabled: fromFile, title: fromFile ? 'Declared in the config file' : '', onclick: async () => {
          menu.open = false;
          if (!await confirmDialog('Delete connection', 'Delete the connection ' + c.name + '? Its users will be blocked and can no longer sign in.', 'Delete', true)) return;
          await guard(null, async () => {
            const res = await api('DELETE', '/auth/v4/ldap/' + c.id);
            setStatus('Connection ' + c.name + ' deleted; ' + res.blocked_users + ' users blocked.');
            await load();
          });
        }}, 'Delete')));
    menu.addEventListener('keydown', e => { if (e.key === 'Escape') { menu.open = false; $('summary', menu).focus(); } });
    return el('tr', {'data-id': String(c.id)},
      el('td', {}, String(c.id)),
      el('td', {}, el('a', {href: '/admin/connections/' + c.id}, c.name), fromFile ? el('span', {className: 'hint'}, ' (config file)') : null),
      el('td', {}, typeNames[c.type] || c.type),
      el('td', {}, (c.urls || []).join(' ')),
      el('td', {className: 'users'}, counts.length ? counts.join(', ') : '0'),
      el('td', {}, last ? fmtTime(last.finished_at || last.started_at) : 'never'),
      el('td', {className: 'result'}, last ? last.result + (last.dry_run ? ' (dry run)' : '') + (last.error ? ': ' + last.error : '') : ''),
      el('td', {className: 'live'}, liveText(c.live)),
      el('td', {className: 'note'}, c.note || ''),
      el('td', {}, menu));
  }

  await load();
};

pages.add = async function () {
  // Reloaded after Next: the connection exists, its own page carries on.
  const saved = new URLSearchParams(location.search).get('id');
  if (saved) { location.replace('/admin/connections/' + encodeURIComponent(saved)); return; }
  initConnectionForm();
  refreshNextRuns();
  let id = null;
  $('#f-port').value = '389';
  // Next checks the connection: the API saves nothing unless the check
  // passes, and answers the directory's own error when it fails.
  $('#settings-form').addEventListener('submit', ev => {
    ev.preventDefault();
    guard($('#next'), async () => {
      $('#check-result').textContent = 'Checking the connection…';
      try {
        const d = await api('POST', '/auth/v4/ldap', settingsPayload(true));
        id = d.id;
      } catch (e) {
        $('#check-result').textContent = '';
        throw new Error('Connection check failed: ' + e.message.replace(/^directory connection check failed:\s*/, ''));
      }
      const check = await api('POST', '/auth/v4/ldap/' + id + '/check');
      $('#check-result').textContent = 'Connected to ' + check.url + ': ' + check.users + ' users, ' + check.groups + ' groups. The connection is saved; now map its groups to roles.';
      for (const f of $$('#step-type, #step-settings')) f.disabled = true;
      $('#next').hidden = true;
      for (const s of $$('#step-roles, #step-schedule, #step-sync')) s.hidden = false;
      history.replaceState(null, '', location.pathname + '?id=' + id);
      if (!$('#rules .rule')) addRule();
      $('.rule-dn').focus();
    });
  });
  const save = async () => { await api('PATCH', '/auth/v4/ldap/' + id, rulesPayload()); };
  $('#download').addEventListener('click', ev => guard(ev.currentTarget, async () => {
    await save();
    await showPreview(id, $('#preview'));
    downloadCSV(id);
  }));
  $('#start-sync').addEventListener('click', ev => guard(ev.currentTarget, async () => {
    await save();
    await startSync(id, $('#sync-output'));
  }));
};

pages.connection = async function () {
  const id = body.dataset.id;
  initConnectionForm();
  let dir;
  async function load() {
    dir = await api('GET', '/auth/v4/ldap/' + id);
    $('#title').textContent = 'Connection ' + dir.name;
    document.title = dir.name + ' · ldapgate';
    fillForm(dir);
    refreshNextRuns();
    const fromFile = dir.managed === 'config';
    $('#managed-note').hidden = !fromFile;
    for (const f of $$('#settings-form fieldset, #step-roles, #step-schedule')) f.disabled = fromFile;
    for (const b of $$('#add-group, #rules button, #save')) b.disabled = fromFile;
    $('#f-password').placeholder = 'unchanged';
    const legacy = dir.naming === 'email';
    $('#naming').textContent = legacy
      ? 'Users of this connection are named by their e-mail address (the scheme before 2025.10.1). Migrate to username@domain to connect more directories; it is cancelled if any new name is already taken.'
      : 'Users of this connection are named username@' + dir.domain + '.';
    $('#migrate').hidden = !legacy;
    $('#live').textContent = dir.live ? 'Live changes: ' + liveText(dir.live) + '.' : '';
  }
  async function loadRuns() {
    const data = await api('GET', '/auth/v4/ldap/' + id + '/runs?limit=50');
    $('#runs tbody').replaceChildren(...data.list.map(r => el('tr', {},
      el('td', {}, el('a', {href: '/admin/connections/' + id + '/runs/' + r.id}, 'Run ' + r.id)),
      el('td', {}, fmtTime(r.started_at)),
      el('td', {}, r.trigger),
      el('td', {}, r.result + (r.dry_run ? ' (dry run)' : '') + (r.error ? ': ' + r.error : '')),
      el('td', {}, countsText(r.counts)),
      el('td', {}, String(r.directory_users || 0)))));
  }
  $('#settings-form').addEventListener('submit', ev => ev.preventDefault());
  $('#save').addEventListener('click', ev => guard(ev.currentTarget, async () => {
    const payload = Object.assign(settingsPayload(true), rulesPayload());
    // Unchanged addresses are not sent, so the stored list (failover
    // servers included) stays as it is.
    const first = (dir.urls || [])[0] || '';
    if (payload.urls.length === 1 && payload.urls[0].toLowerCase() === first.toLowerCase()) delete payload.urls;
    await api('PATCH', '/auth/v4/ldap/' + id, payload);
    $('#f-password').value = '';
    await load();
    setStatus('Connection saved.');
  }));
  $('#check').addEventListener('click', ev => guard(ev.currentTarget, async () => {
    $('#check-result').textContent = 'Checking…';
    try {
      const c = await api('POST', '/auth/v4/ldap/' + id + '/check');
      $('#check-result').textContent = 'Connected to ' + c.url + ': ' + c.users + ' users, ' + c.groups + ' groups.';
    } catch (e) { $('#check-result').textContent = ''; throw new Error('Connection check failed: ' + e.message); }
  }));
  $('#show-preview').addEventListener('click', ev => guard(ev.currentTarget, () => showPreview(id, $('#preview'))));
  $('#download').addEventListener('click', () => downloadCSV(id));
  $('#dry-run').addEventListener('click', ev => guard(ev.currentTarget, () => startSync(id, $('#sync-output'), {dryRun: true, after: () => loadRuns().catch(showError)})));
  $('#start-sync').addEventListener('click', ev => guard(ev.currentTarget, () => startSync(id, $('#sync-output'), {after: () => loadRuns().catch(showError)})));
  $('#migrate').addEventListener('click', ev => guard(ev.currentTarget, async () => {
    if (!await confirmDialog('Migrate to username@domain', 'Rename every user of ' + dir.name + ' to username@' + dir.domain + '? Nothing changes if any new name is already taken.', 'Migrate', false)) return;
    const out = $('#migrate-output');
    try {
      const res = await api('POST', '/auth/v4/ldap/' + id + '/migrate');
      out.replaceChildren(el('p', {id: 'migrate-result', className: 'status'},
        res.already_migrated ? 'Already migrated.' : 'Migrated: ' + res.renamed + ' renamed, ' + res.unchanged + ' unchanged, ' + res.not_in_directory + ' not in the directory.'));
      await load();
      await loadRuns();
    } catch (e) {
      if (e.code !== 'migration_conflict') throw e;
      out.replaceChildren(
        el('p', {className: 'error', role: 'alert'}, 'Migration cancelled, nothing was changed: these names are already taken on the platform. Rename or delete those accounts, then migrate again.'),
        el('ul', {id: 'migrate-conflicts'}, (e.value || []).map(n => el('li', {}, n))));
    }
  }));
  await load();
  await loadRuns();
};

// why says in words why a run changed a user (the guide's rules).
const reasonWords = {
  deleted_in_ldap: 'deleted in the directory (rule 7)',
  out_of_scope: 'no longer matches the connection\'s scope (rule 7)',
  blocked_in_ldap: 'disabled in the directory (rule 8)',
  directory_removed: 'its connection was deleted (rule 9)',
  no_mapped_group: 'in no group mapped to a role (rule 5)',
  no_email: 'no e-mail address (rule 1)',
  not_in_ad_users: 'not in the Active Directory Users group (rule 2)',
};
function why(c) {
  const r = c.reason ? (reasonWords[c.reason] || c.reason.replaceAll('_', ' ')) : '';
  switch (c.action) {
    case 'create': return 'new in the directory (rule 3)';
    case 'convert_local': return 'a local account of the same name now comes from the directory (rule 4)';
    case 'update': return c.reason === 'migrate' ? 'migration to username@domain' : 'changed in the directory';
    case 'unblock': return 'active in the directory again' + (r ? '; was: ' + r : '');
    case 'adopt': return 'took over the account of a deleted connection (rule 9)';
    default: return r;
  }
}

pages.run = async function () {
  const id = body.dataset.id, runID = body.dataset.run;
  const data = await api('GET', '/auth/v4/ldap/' + id + '/runs/' + runID);
  const r = data.run;
  const dl = $('#run-summary');
  const add = (k, v) => dl.append(el('dt', {}, k), el('dd', {}, v));
  add('Connection', r.directory);
  add('Started', fmtTime(r.started_at));
  add('Finished', fmtTime(r.finished_at));
  add('Trigger', r.trigger);
  add('Result', r.result + (r.dry_run ? ' (dry run)' : '') + (r.forced ? ' (forced)' : ''));
  if (r.error) add('Reason', r.error);
  add('Users read', String(r.directory_users || 0));
  add('Changes', countsText(r.counts));
  const rows = data.list.map(c => {
    const fields = Object.entries(c.fields || {}).map(([k, [a, b]]) => el('div', {}, k + ': ' + (a || '∅') + ' → ' + (b || '∅')));
    const tr = el('tr', {'data-user': c.username},
      el('td', {}, fmtTime(c.at)), el('td', {}, c.username), el('td', {}, c.action),
      el('td', {}, why(c)), el('td', {}, fields));
    tr.dataset.text = (c.username + ' ' + c.action + ' ' + why(c)).toLowerCase();
    return tr;
  });
  $('#changes tbody').replaceChildren(...rows);
  if (!rows.length) $('#changes').after(el('p', {}, 'This run changed nothing.'));
  $('#change-filter').addEventListener('input', ev => {
    const q = ev.target.value.trim().toLowerCase();
    for (const tr of rows) tr.hidden = !!q && !tr.dataset.text.includes(q);
  });
};

pages.users = async function () {
  const pageSize = 50;
  let offset = 0;
  const dirNames = {};
  fillRoleSelect($('#u-role'), '');
  try {
    for (const d of (await api('GET', '/auth/v4/ldap')).list) {
      dirNames[d.id] = d.name;
      $('#u-directory').append(el('option', {value: String(d.id)}, d.name));
    }
  } catch (e) { showError(e); }
  const pwDialog = $('#password-dialog');
  let pwUser = null;
  pwDialog.addEventListener('close', () => {
    if (pwDialog.returnValue !== 'ok' || !pwUser) return;
    const u = pwUser;
    guard(null, async () => {
      await api('POST', '/auth/v4/user/' + u.id + '/password', {password: $('#new-password').value});
      setStatus('Password of ' + u.username + ' changed; their sessions have ended.');
    });
  });

  async function load() {
    const p = new URLSearchParams({limit: String(pageSize), offset: String(offset)});
    const state = $('#u-state').value, role = $('#u-role').value, dir = $('#u-directory').value, q = $('#u-search').value.trim();
    if (state) p.set('state', state);
    if (role) p.set('role', role);
    if (dir === 'local') p.set('source', 'local'); else if (dir) p.set('directory', dir);
    if (q) p.set('q', q);
    const data = await api('GET', '/auth/v4/user?' + p);
    $('#users tbody').replaceChildren(...data.list.map(row));
    const total = data.total;
    $('#page-info').textContent = total ? (offset + 1) + '–' + (offset + data.size) + ' of ' + total : 'No users match.';
    $('#prev').disabled = offset === 0;
    $('#next-page').disabled = offset + data.size >= total;
  }

  function row(u) {
    const blocked = u.state !== 'active';
    const actions = el('td', {});
    if (u.state === 'blocked' || u.state === 'active') {
      actions.append(el('button', {
        type: 'button', className: 'secondary', 'aria-label': (blocked ? 'Unblock ' : 'Block ') + u.username,
        onclick: ev => guard(ev.currentTarget, async () => {
          await api('POST', '/auth/v4/user/' + u.id + (blocked ? '/unblock' : '/block'));
          setStatus(u.username + (blocked ? ' unblocked.' : ' blocked; their sessions have ended.'));
          await load();
        }),
      }, blocked ? 'Unblock' : 'Block'));
    }
    if (u.source === 'local') {
      actions.append(' ', el('button', {
        type: 'button', className: 'secondary', 'aria-label': 'Set password of ' + u.username,
        onclick: () => {
          pwUser = u;
          $('#password-user').textContent = u.username;
          $('#new-password').value = '';
          pwDialog.returnValue = '';
          pwDialog.showModal();
        },
      }, 'Set password'));
    }
    const why = u.block_reason || u.ldap_status;
    const state = (stateNames[u.state] || u.state) + (why ? ' (' + why.replaceAll('_', ' ') + ')' : '');
    return el('tr', {'data-user': u.username},
      el('td', {}, u.username), el('td', {}, u.email || ''), el('td', {}, u.display_name || ''),
      el('td', {}, u.role), el('td', {className: 'state'}, state),
      el('td', {}, u.source === 'local' ? 'local' : (dirNames[u.directory_id] || String(u.directory_id))),
      actions);
  }

  const reload = () => { offset = 0; guard(null, load); };
  $('#user-filters').addEventListener('submit', ev => { ev.preventDefault(); reload(); });
  for (const s of $$('#user-filters select')) s.addEventListener('change', reload);
  let t = null;
  $('#u-search').addEventListener('input', () => { clearTimeout(t); t = setTimeout(reload, 300); });
  $('#prev').addEventListener('click', () => { offset = Math.max(0, offset - pageSize); guard(null, load); });
  $('#next-page').addEventListener('click', () => { offset += pageSize; guard(null, load); });
  await load();
};

pages.settings = async function () {
  $('#level-form').addEventListener('submit', ev => {
    ev.preventDefault();
    guard($('#set-level'), async () => {
      const res = await api('POST', '/auth/v4/internal/settings/log/level', $('#log-level').value);
      setStatus('Log level is now ' + res.level + '.');
    });
  });
};

// An open row menu closes when focus or a click goes elsewhere.
document.addEventListener('click', ev => {
  for (const m of $$('details.menu[open]')) if (!m.contains(ev.target)) m.open = false;
});

document.addEventListener('DOMContentLoaded', () => {
  const init = pages[body.dataset.page];
  if (init) init().catch(showError);
});
