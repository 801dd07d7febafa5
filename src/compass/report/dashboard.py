"""The ECDA dashboard: one server-rendered page (inline SVG, a few lines of inline script,
no network) from plain data the service collects.

The write buttons (promote, roll back, approve, retry) call the service's own API with
the bearer token the operator types into the page: it is kept in the tab's
``sessionStorage`` and never sent to, or rendered by, the server except as the
``Authorization`` header of those calls.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from html import escape
from typing import Any

from .svg import PALETTE, line_chart

STYLE = ("body{font-family:system-ui,sans-serif;margin:1.5em;max-width:1100px;color:#222}"
         "table{border-collapse:collapse;font-size:13px;margin:.5em 0}td,th{border:1px solid #ccc;"
         "padding:3px 6px;text-align:left;vertical-align:top}th{background:#f4f4f4}"
         ".state-failed,.drift{color:#b00}.state-promoted{color:#080}.state-awaiting_approval{color:#a60}"
         "button{margin:0 2px;cursor:pointer}#status{font-weight:bold;margin-left:1em}"
         ".box{border:1px solid #ddd;padding:.5em 1em;margin:.5em 0}")

SCRIPT = """
const box = document.getElementById('token');
box.value = sessionStorage.getItem('compass-token') || '';
box.addEventListener('input', () => sessionStorage.setItem('compass-token', box.value));
for (const button of document.querySelectorAll('button[data-url]')) {
  button.addEventListener('click', async () => {
    const status = document.getElementById('status');
    if (!box.value) { status.textContent = 'type the API token first'; return; }
    if (button.dataset.confirm && !confirm(button.dataset.confirm)) return;
    status.textContent = 'working…';
    const answer = await fetch(button.dataset.url, {method: 'POST',
      headers: {'Authorization': 'Bearer ' + box.value}});
    const body = await answer.json().catch(() => ({}));
    status.textContent = answer.ok ? 'done: ' + button.textContent : 'refused (' + answer.status + '): '
      + (typeof body.detail === 'string' ? body.detail : JSON.stringify(body.detail));
    status.dataset.code = answer.status;
    if (answer.ok) setTimeout(() => location.reload(), 600);
  });
}
"""


def _when(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _button(label: str, url: str, confirm: str = "") -> str:
    extra = f" data-confirm='{escape(confirm)}'" if confirm else ""
    return f"<button data-url='{escape(url)}'{extra}>{escape(label)}</button>"


def _pct(value: Any) -> str:
    return f"{value:+.2%}" if isinstance(value, (int, float)) else ""


def _drift_charts(lang: str, reports: list[dict[str, Any]]) -> str:
    if not reports:
        return "<p>No completed window yet.</p>"
    xs = [float(r["window"]) for r in reports]
    labels = [f"window {r['window']} ({_when(r.get('time'))})" for r in reports]
    alarms = [i for i, r in enumerate(reports) if r["drift"]]
    charts = []
    for stat, name in (("js", "JS divergence (bits)"), ("novelty", "novelty rate")):
        charts.append(line_chart(
            xs, {name: [r[stat] for r in reports], "threshold": [r["threshold"][stat] for r in reports]},
            y_label=name, x_label="window", x_labels=labels, dashed=["threshold"], markers=alarms,
            colours=[PALETTE[0], "#777"], title=f"{lang}: {name} per window against its threshold"))
    return "".join(charts)


def _adapter(lang: str, versions: list[dict[str, Any]]) -> str:
    active = next((v for v in versions if v["status"] == "active"), None)
    rows = []
    for v in versions:
        m = v["metrics"]
        actions = ""
        if v["status"] == "active" and v.get("parent") is not None:
            actions = _button("roll back", f"/v1/adapters/{v['id']}/rollback?reason=dashboard",
                              f"Roll back {v['id']}?")
        elif v["status"] in ("candidate", "retired"):
            actions = _button("promote", f"/v1/adapters/{v['id']}/promote?reason=dashboard",
                              f"Promote {v['id']}?")
        rows.append(f"<tr class='adapter' data-id='{escape(v['id'])}' data-status='{escape(v['status'])}'>"
                    f"<td>{escape(v['id'])}</td><td class='state-{escape(v['status'])}'>{escape(v['status'])}"
                    f"</td><td>{escape(v.get('parent') or '')}</td><td>{_pct(m.get('adaptation_gain'))}</td>"
                    f"<td>{_pct(m.get('preservation_loss'))}</td><td>{escape(v.get('reason') or '')}</td>"
                    f"<td>{actions}</td></tr>")
    head = (f"<p>Active: <b class='active-version'>{escape(active['id'])}</b></p>" if active
            else "<p>No active version.</p>")
    return (head + "<table><tr><th>version</th><th>status</th><th>parent</th><th>target gain (NLL)</th>"
            "<th>forgetting (preserve-set NLL)</th><th>reason</th><th></th></tr>" + "".join(rows)
            + "</table>")


def _transitions(moves: list[dict[str, Any]]) -> str:
    """The language's latest moves of the ECDA machine."""
    if not moves:
        return ""
    rows = [f"<tr class='transition'><td>{_when(t['time'])}</td><td>{escape(t['state_from'])} → "
            f"{escape(t['state_to'])}</td><td>{escape(t['reason'])}</td></tr>" for t in moves]
    return ("<h3>Update cycle</h3><table><tr><th>when (UTC)</th><th>transition</th><th>why</th></tr>"
            + "".join(rows) + "</table>")


def _jobs(jobs: list[dict[str, Any]]) -> str:
    if not jobs:
        return "<p>No update jobs yet.</p>"
    rows = []
    for j in jobs:
        numbers = (j.get("result") or {}).get("numbers") or {}
        actions = ""
        if j["state"] == "awaiting_approval":
            actions = _button("approve", f"/v1/jobs/{j['id']}/approve?reason=dashboard",
                              f"Promote the candidate of job {j['id']}?")
        selection = (f"<a href='/jobs/{j['id']}/selection'>selected data</a>"
                     if (j.get("result") or {}).get("selection") else "")
        state = escape(j["state"])
        rows.append(f"<tr class='job' data-id='{j['id']}' data-state='{state}'><td>{j['id']}</td>"
                    f"<td>{escape(j['lang'])}</td><td class='state-{state}'>{state}</td>"
                    f"<td>{escape(j['mode'])}</td><td>{_when(j['created'])}</td><td>{_when(j['finished'])}</td>"
                    f"<td>{j['attempt']}</td><td>{escape(j.get('adapter') or '')}</td>"
                    f"<td>{_pct(numbers.get('adaptation_gain'))}</td>"
                    f"<td>{_pct(numbers.get('preservation_loss'))}</td>"
                    f"<td>{escape(j.get('error') or '')}</td><td>{selection}</td><td>{actions}</td></tr>")
    return ("<table><tr><th>job</th><th>lang</th><th>state</th><th>mode</th><th>created (UTC)</th>"
            "<th>finished</th><th>attempts</th><th>candidate</th><th>target gain</th><th>forgetting</th>"
            "<th>error</th><th></th><th></th></tr>" + "".join(rows) + "</table>")


def _notifications(notes: list[dict[str, Any]] | None) -> str:
    if notes is None:
        return "<p>No model server or webhook configured.</p>"
    if not notes:
        return "<p>None yet.</p>"
    rows = []
    for n in notes:
        retry = _button("retry now", f"/v1/notifications/{n['id']}/retry") if n["state"] == "pending" else ""
        rows.append(f"<tr class='notification' data-state='{escape(n['state'])}'><td>{n['id']}</td>"
                    f"<td>{escape(n['target'])}</td><td>{escape(n['event'])} {escape(n['version'])}</td>"
                    f"<td class='state-{'promoted' if n['state'] == 'delivered' else 'failed'}'>"
                    f"{escape(n['state'])}</td><td>{n['attempts']}</td>"
                    f"<td>{escape(n.get('last_error') or '')}</td><td>{retry}</td></tr>")
    return ("<table><tr><th>#</th><th>target</th><th>event</th><th>state</th><th>attempts</th>"
            "<th>last error</th><th></th></tr>" + "".join(rows) + "</table>")


def render_dashboard(data: dict[str, Any]) -> str:
    """``data``: ``languages`` ({lang: {"reports": [...], "versions": [...], "state"?: the ECDA
    machine's, "transitions"?: [...]}}), ``jobs``,
    ``notifications`` (``None`` when not configured), ``controls``, ``queries``."""
    sections = []
    for lang, info in sorted(data["languages"].items()):
        latest = info["reports"][-1] if info["reports"] else None
        drifting = latest is not None and latest["drift"]
        flag = " <span class='drift'>drift in the latest window</span>" if drifting else ""
        state = (f" <small class='machine-state'>{escape(info['state'])}</small>"
                 if info.get("state") else "")
        sections.append(f"<section class='language' id='lang-{escape(lang)}'>"
                        f"<h2>{escape(lang)}{state}{flag}</h2>{_drift_charts(lang, info['reports'])}"
                        "<h3>Adapter versions</h3>"
                        f"{_adapter(lang, info['versions'])}{_transitions(info.get('transitions', []))}"
                        "</section>")
    q = data.get("queries") or {}
    controls = data.get("controls")
    return "".join([
        "<!doctype html><html><head><meta charset='utf-8'><title>COMPASS-ECDA</title>",
        f"<style>{STYLE}</style></head><body><h1>COMPASS-ECDA</h1>",
        "<p><label>API token <input id='token' type='password' autocomplete='off' size='34'></label> "
        "<small>(kept in this browser tab only)</small><span id='status'></span></p>",
        f"<p class='box'>Queries stored: {q.get('last_seq', 0)}, monitored: {q.get('monitored_through', 0)}"
        + (f"; modes: {escape(json.dumps(controls['modes']))}, default {escape(controls['mode'])}, "
           f"cool-down {controls['cooldown']:.0f} s, at most {controls['daily_jobs']} jobs a day"
           if controls else "; no job controls (monitor only)") + "</p>",
        *sections, "<h2>Update jobs</h2>", _jobs(data["jobs"]),
        "<h2>Notifications to the model server</h2>", _notifications(data.get("notifications")),
        f"<script>{SCRIPT}</script></body></html>"])
