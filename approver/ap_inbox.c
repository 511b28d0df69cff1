/*
 * ap_inbox.c - the web inbox page. Values from the API are put in the page
 * with textContent / value only, never as HTML.
 */
#include "ap_inbox.h"
#include "sl_common.h"

#include <assert.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char ap_inbox_html[] =
    "<!doctype html>\n"
    "<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    "<title>Sluice inbox</title>\n"
    "<style>\n"
    "body{font:14px system-ui,sans-serif;margin:2em;color:#222}\n"
    "table{border-collapse:collapse;width:100%;margin-bottom:2em}\n"
    "td,th{border-bottom:1px solid #ddd;padding:.4em;text-align:left;vertical-align:top}\n"
    "code{font-size:12px;white-space:pre-wrap}button{margin-right:.3em}\n"
    ".err{color:#b00}input{margin:.1em}tr.linked{background:#fff6c8}\n"
    "</style></head><body>\n"
    "<h1>Sluice inbox</h1>\n"
    "<p><label>API token <input id=\"token\" type=\"password\" size=\"40\"></label>\n"
    "<button id=\"load\">Load</button> <span id=\"msg\" class=\"err\"></span></p>\n"
    "<h2>Pending requirements</h2>\n"
    "<table><thead><tr><th>Run</th><th>Tool</th><th>Arguments</th><th>Kind</th>"
    "<th>Decision</th></tr></thead><tbody id=\"pending\"></tbody></table>\n"
    "<h2>Decide many</h2>\n"
    "<p><label>Tool <input id=\"bulk-tool\" size=\"20\"></label> "
    "<label>Agent <input id=\"bulk-agent\" size=\"16\"></label> "
    "<label>Arguments <input id=\"bulk-args\" size=\"30\" "
    "placeholder='{\"/replicas\": 2}'></label>\n"
    "<button id=\"bulk-count\">Count matching</button> <span id=\"bulk-msg\"></span></p>\n"
    "<p id=\"bulk-act\" hidden><input id=\"bulk-note\" placeholder=\"note\"> "
    "<button id=\"bulk-approve\"></button> <button id=\"bulk-reject\"></button></p>\n"
    "<h2>Audit log</h2>\n"
    "<table><thead><tr><th>When</th><th>Tool</th><th>Type</th><th>Status</th>"
    "<th>By</th><th>Run</th></tr></thead><tbody id=\"log\"></tbody></table>\n"
    "<script>\n"
    "const $ = (id) => document.getElementById(id);\n"
    "const tok = $('token');\n"
    "/* a token may come in the fragment (#token=...), which is never sent */\n"
    "const frag = new URLSearchParams(location.hash.slice(1));\n"
    "tok.value = frag.get('token') || sessionStorage.getItem('sluice-token') || '';\n"
    "/* and leaves the address bar (and the history) once read */\n"
    "if (location.hash) history.replaceState(null, '', location.pathname + "
    "location.search);\n"
    "/* a notification's link names a requirement (?requirement=ID): its row\n"
    "   comes first, marked */\n"
    "const linked = new URLSearchParams(location.search).get('requirement');\n"
    "function cell(tr, text, code) {\n"
    "  const td = document.createElement('td');\n"
    "  const el = code ? document.createElement('code') : td;\n"
    "  el.textContent = text == null ? '' : String(text);\n"
    "  if (code) td.appendChild(el);\n"
    "  tr.appendChild(td); return td;\n"
    "}\n"
    "async function api(method, path, body) {\n"
    "  const r = await fetch(path, {method, headers: {'Authorization': 'Bearer ' + "
    "tok.value,\n"
    "    'Content-Type': 'application/json'}, body: body ? JSON.stringify(body) : "
    "undefined});\n"
    "  const j = await r.json();\n"
    "  if (!r.ok) throw new Error(j.error || r.status);\n"
    "  return j;\n"
    "}\n"
    "function button(td, label, fn) {\n"
    "  const b = document.createElement('button'); b.textContent = label;\n"
    "  b.onclick = async () => { try { await fn(); await load(); } catch (e) {\n"
    "    $('msg').textContent = e.message; } };\n"
    "  td.appendChild(b);\n"
    "}\n"
    "function input(td, placeholder) {\n"
    "  const i = document.createElement('input'); i.placeholder = placeholder;\n"
    "  td.appendChild(i); return i;\n"
    "}\n"
    "function decision(td, r) {\n"
    "  if (r.quorum > 1) td.textContent = r.votes.filter((v) => v.confirmed).length + ' of ' "
    "+ r.quorum + ' approvals ';\n"
    "  if (!r.may_decide) { td.append('not yours to decide'); return; }\n"
    "  const base = '/v1/requirements/' + encodeURIComponent(r.id);\n"
    "  const note = input(td, 'note');\n"
    "  if (r.needs_user_input) {\n"
    "    const fields = r.user_input_schema.map((f) => [f, input(td, f.name + ' (' + "
    "f.type + ')')]);\n"
    "    button(td, 'Submit', () => { const values = {};\n"
    "      for (const [f, i] of fields) values[f.name] = (f.type === 'integer' || "
    "f.type === 'number')\n"
    "        ? Number(i.value) : f.type === 'boolean' ? i.value === 'true' : i.value;\n"
    "      return api('POST', base + '/input', {values, note: note.value || undefined}); "
    "});\n"
    "  } else if (r.external_execution) {\n"
    "    const res = input(td, 'result');\n"
    "    button(td, 'Submit result', () => api('POST', base + '/result', {result: "
    "res.value}));\n"
    "  } else {\n"
    "    button(td, 'Approve', () => api('POST', base + '/confirm', {note: note.value || "
    "undefined}));\n"
    "  }\n"
    "  button(td, 'Reject', () => api('POST', base + '/reject', {note: note.value || "
    "undefined}));\n"
    "}\n"
    "async function load() {\n"
    "  sessionStorage.setItem('sluice-token', tok.value);\n"
    "  $('msg').textContent = '';\n"
    "  try {\n"
    "    const p = await api('GET', '/v1/requirements?status=pending&limit=200');\n"
    "    $('pending').replaceChildren();\n"
    "    const rows = p.data.slice().sort((a, b) => (b.id === linked) - (a.id === linked));\n"
    "    if (linked && !rows.some((r) => r.id === linked))\n"
    "      $('msg').textContent = 'requirement ' + linked + ' is not pending any more';\n"
    "    for (const r of rows) {\n"
    "      const tr = document.createElement('tr');\n"
    "      if (r.id === linked) tr.className = 'linked';\n"
    "      cell(tr, r.run_id); cell(tr, r.tool_name); cell(tr, JSON.stringify(r.tool_args), "
    "true);\n"
    "      cell(tr, (r.approval_type || 'no approval') + ', ' + (r.needs_user_input ? "
    "'user input'\n"
    "        : r.external_execution ? 'external' : 'confirmation'));\n"
    "      decision(cell(tr, ''), r); $('pending').appendChild(tr);\n"
    "    }\n"
    "    const a = await api('GET', '/v1/approvals?limit=100');\n"
    "    $('log').replaceChildren();\n"
    "    for (const x of a.data) {\n"
    "      const tr = document.createElement('tr');\n"
    "      cell(tr, x.resolved_at || x.created_at); cell(tr, x.tool_name);\n"
    "      cell(tr, x.approval_type); cell(tr, x.status); cell(tr, x.resolved_by); "
    "cell(tr, x.run_id);\n"
    "      $('log').appendChild(tr);\n"
    "    }\n"
    "  } catch (e) { $('msg').textContent = e.message; }\n"
    "}\n"
    "/* decide many: the count first (a dry run), then the decision for that\n"
    "   filter only */\n"
    "let counted = null;\n"
    "function bulkFilter() {\n"
    "  const f = {};\n"
    "  if ($('bulk-tool').value) f.tool_name = $('bulk-tool').value;\n"
    "  if ($('bulk-agent').value) f.agent_id = $('bulk-agent').value;\n"
    "  if ($('bulk-args').value) f.args = JSON.parse($('bulk-args').value);\n"
    "  return f;\n"
    "}\n"
    "$('bulk-count').onclick = async () => {\n"
    "  $('msg').textContent = ''; $('bulk-act').hidden = true; counted = null;\n"
    "  try {\n"
    "    const f = bulkFilter();\n"
    "    const r = await api('POST', '/v1/requirements/decide', {filter: f, decision: "
    "'confirm', dry_run: true});\n"
    "    const n = Math.min(r.matched, r.limit);\n"
    "    $('bulk-msg').textContent = r.matched + ' pending requirement(s) match' +\n"
    "      (r.matched > r.limit ? ' (' + r.limit + ' are decided at a time)' : '');\n"
    "    if (n > 0) {\n"
    "      counted = JSON.stringify(f);\n"
    "      $('bulk-approve').textContent = 'Approve all ' + n;\n"
    "      $('bulk-reject').textContent = 'Reject all ' + n;\n"
    "      $('bulk-act').hidden = false;\n"
    "    }\n"
    "  } catch (e) { $('msg').textContent = e.message; }\n"
    "};\n"
    "async function bulk(decision) {\n"
    "  try {\n"
    "    const f = bulkFilter();\n"
    "    if (JSON.stringify(f) !== counted) throw new Error('the filter changed: count "
    "again');\n"
    "    const r = await api('POST', '/v1/requirements/decide', {filter: f, decision,\n"
    "      note: $('bulk-note').value || undefined});\n"
    "    $('bulk-msg').textContent = r.decided.length + ' decided, ' + r.voted.length + "
    "' voted on, ' +\n"
    "      r.refused.length + ' refused' + (r.refused.length ? ': ' + r.refused[0].error : "
    "'');\n"
    "    $('bulk-act').hidden = true; counted = null;\n"
    "    await load();\n"
    "  } catch (e) { $('msg').textContent = e.message; }\n"
    "}\n"
    "$('bulk-approve').onclick = () => bulk('confirm');\n"
    "$('bulk-reject').onclick = () => bulk('reject');\n"
    "$('load').onclick = load;\n"
    "if (tok.value) load();\n"
    "</script></body></html>\n";

/* 'sha256-BASE64' of the text between open and close in the page. */
static char *source_hash(const char *open, const char *close)
{
	const char *start = strstr(ap_inbox_html, open), *end;
	unsigned char digest[EVP_MAX_MD_SIZE], b64[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
	unsigned len = 0;

	assert(start); /* the page above has one script and one style */
	start += strlen(open);
	end = strstr(start, close);
	assert(end);

	EVP_Digest(start, (size_t)(end - start), digest, &len, EVP_sha256(), NULL);
	EVP_EncodeBlock(b64, digest, (int)len);
	return sl_asprintf("'sha256-%s'", b64);
}

static char *inbox_csp;

static void make_csp(void)
{
	char *script = source_hash("<script>", "</script>");
	char *style = source_hash("<style>", "</style>");

	inbox_csp = sl_asprintf("default-src 'none'; script-src %s; style-src %s; "
	                        "connect-src 'self'; base-uri 'none'; form-action 'none'; "
	                        "frame-ancestors 'none'",
	                        script, style);
	free(script);
	free(style);
}

const char *ap_inbox_csp(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, make_csp);
	return inbox_csp;
}
