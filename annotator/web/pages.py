"""The pages' HTML (Jinja, autoescaped), style and the one small script, kept in Python so they install
with the package whatever the install method (no package-data to forget).

The script only turns a dropped file into the form's file and submits it; the pages work without it.
"""
from __future__ import annotations

BASE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{% block title %}pose check{% endblock %} - pose-annotator</title>
<style>
body { font-family: system-ui, sans-serif; margin: 0; background: #f4f4f6; color: #222; }
header { background: #23232b; color: #eee; padding: 10px 20px; display: flex; gap: 24px; align-items: baseline; }
header a { color: #cfd8ff; text-decoration: none; } header b { font-size: 1.1em; }
main { padding: 16px 20px; max-width: 1400px; }
.drop { border: 3px dashed #99a; border-radius: 10px; padding: 28px; text-align: center; background: #fff; }
.drop.over { border-color: #2a6; background: #eefbf2; }
.drop.compact { padding: 10px 20px; } .drop.compact p.note { margin: 6px 0 0; }
.error { background: #fde8e8; border: 1px solid #e55; color: #900; padding: 10px 14px; border-radius: 6px; }
.note { color: #666; font-size: 0.9em; }
.result { display: flex; gap: 20px; flex-wrap: wrap; align-items: flex-start; margin-top: 16px; }
.result img.photo { max-width: min(100%, 900px); border-radius: 4px; background: #000; }
.people { flex: 1; min-width: 300px; }
.card { background: #fff; border-radius: 8px; padding: 10px 14px; margin-bottom: 12px; box-shadow: 0 1px 3px #0002; }
table { border-collapse: collapse; } td, th { padding: 2px 10px 2px 0; text-align: left; }
tr.bad td { color: #c00; font-weight: bold; }
.legend span { display: inline-block; margin-right: 12px; }
.legend i { display: inline-block; width: 14px; height: 14px; border-radius: 7px; vertical-align: -2px; margin-right: 4px; border: 1px solid #888; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 14px; }
.grid .card img { width: 100%; border-radius: 4px; background: #000; }
.card div { overflow-wrap: anywhere; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 9px; font-size: 0.85em; color: #fff; background: #778; }
.badge.verified { background: #2a8a4a; } .badge.conflict { background: #d4572a; }
.badge.in-progress { background: #c49000; } .badge.failed { background: #b00; } .badge.not-pre-filled { background: #aaa; }
.tabs a { margin-right: 12px; } .tabs a.on { font-weight: bold; text-decoration: none; color: #222; }
.pager { margin: 14px 0; }
</style></head>
<body><header><b>pose-annotator</b><a href="/">pose check</a>
{% if project %}<a href="/project">project {{ project }}</a>{% endif %}
<span class="note" id="model">{{ model_state }}</span></header>
<main>{% block main %}{% endblock %}</main>
<script src="/app.js"></script></body></html>
"""

CHECK = """{% extends "base.html" %}
{% block main %}
<form id="upload" class="drop{{ ' compact' if result or error }}" method="post" action="/" enctype="multipart/form-data">
  {% if result or error %}<b>Drop another photo here</b> or choose one:
  {% else %}<p><b>Drop a photo here</b> or choose one: every person's skeleton is drawn, colored by body region,
  joints bent past their usual range in red, and the shoulder, elbow, hip and knee angles written next to them.</p>{% endif %}
  <input id="file" type="file" name="image" accept="image/jpeg,image/png,image/webp,image/bmp,image/tiff">
  <button type="submit">Check pose</button>
  <p class="note">JPEG, PNG, WebP, BMP or TIFF, up to {{ max_mb }} MB and {{ max_mp }} megapixels.
  The photo is not stored. Programs can post to <code>/api/pose</code> (JSON).</p>
  <p class="note" id="busy" hidden>checking...</p>
</form>
{% if error %}<p class="error" id="error">{{ error }}</p>{% endif %}
{% if result %}
<div class="result" id="result">
  <img class="photo" id="drawing" alt="skeletons on {{ result.name }}" src="data:image/jpeg;base64,{{ result.jpeg }}">
  <div class="people">
    <p><b>{{ result.name }}</b>: {{ result.width }}x{{ result.height }},
    <span id="count">{{ result.people|length }}</span> {{ "person" if result.people|length == 1 else "people" }}
    found in {{ "%.0f"|format(result.ms) }} ms ({{ model }}).</p>
    <p class="legend">{% for r, c in colors %}<span><i style="background: rgb{{ c }}"></i>{{ r.replace("_", " ") }}</span>{% endfor %}</p>
    {% if not result.people %}<p>Nobody found in this photo.</p>{% endif %}
    {% for p in result.people %}
    <div class="card person"><b>Person {{ loop.index }}</b>
      {% if p.implausible %}<span class="badge conflict">{{ p.implausible|length }} implausible</span>{% endif %}
      <table><tr><th>joint</th><th>angle</th><th>usual range</th></tr>
      {% for name, deg in p.angles.items() %}
      <tr class="{{ 'bad' if name in p.implausible else '' }}"><td>{{ name.replace("_", " ") }}</td>
        <td>{{ "-" if deg is none else "%.0f°"|format(deg) }}</td><td>{{ ranges[name] }}</td></tr>
      {% endfor %}</table>
    </div>
    {% endfor %}
  </div>
</div>
<script type="application/json" id="pose-json">{{ result.json|tojson }}</script>
{% endif %}
{% endblock %}
"""

PROJECT = """{% extends "base.html" %}
{% block title %}{{ project }}{% endblock %}
{% block main %}
<h2>{{ project }} <span class="note">read only</span></h2>
<p class="note">{{ counts.images }} images ({{ counts.get("images_done", 0) }} pre-filled,
{{ counts.get("images_pending", 0) }} not yet, {{ counts.get("images_failed", 0) }} failed),
{{ counts.persons }} people, {{ counts.points_verified }} points verified, {{ counts.points_predicted }} predicted.
Suspect points (score at least {{ threshold }}) have a magenta ring.</p>
<p class="tabs">{% for f in filters %}<a class="{{ 'on' if f == filter else '' }}"
  href="/project?filter={{ f|urlencode }}">{{ f }}</a>{% endfor %}</p>
<div class="grid" id="queue">
{% for im in images %}
  <div class="card image" data-file="{{ im.file_name }}" data-status="{{ im.status }}">
    <a href="/project/image/{{ im.id }}"><img loading="lazy" alt="{{ im.file_name }}" src="/project/image/{{ im.id }}.jpg"></a>
    <div><b>{{ page * per_page + loop.index }}.</b> {{ im.file_name }}</div>
    <div><span class="badge {{ im.status.replace(' ', '-') }}">{{ im.status }}</span>
      {{ im.people|length }} {{ "person" if im.people|length == 1 else "people" }}{% if im.n_suspects %},
      {{ im.n_suspects }} suspect points{% endif %}{% if im.score %}, ~{{ "%.1f"|format(im.score) }} points likely wrong{% endif %}</div>
    <div class="note">{% for p in im.people %}person {{ p.id }}: {{ p.status }}{{ "; " if not loop.last }}{% endfor %}</div>
  </div>
{% else %}<p>No images in "{{ filter }}".</p>
{% endfor %}
</div>
<p class="pager">page {{ page + 1 }} of {{ pages }} ({{ total }} images)
{% if page > 0 %}<a href="/project?filter={{ filter|urlencode }}&page={{ page - 1 }}">previous</a>{% endif %}
{% if page + 1 < pages %}<a href="/project?filter={{ filter|urlencode }}&page={{ page + 1 }}">next</a>{% endif %}</p>
{% if failed %}<h3>Files that failed</h3><ul>{% for name, err in failed %}<li>{{ err }}</li>{% endfor %}</ul>{% endif %}
<h3>Distillation rounds</h3>
{% if rounds %}
<img src="/project/rounds.png" alt="gold metrics per round" style="max-width: 100%">
<table><tr><th>round</th><th>status</th><th>teacher</th><th>reason</th></tr>
{% for r in rounds %}<tr><td>{{ r.k }}</td><td>{{ r.status }}</td><td>{{ r.teacher }}</td><td>{{ r.reason or "" }}</td></tr>{% endfor %}
</table>
{% else %}<p class="note">No distillation rounds yet (<code>pose-annotator distill</code>).</p>{% endif %}
{% endblock %}
"""

IMAGE = """{% extends "base.html" %}
{% block title %}{{ im.file_name }}{% endblock %}
{% block main %}
<p><a href="/project">back to the queue</a></p>
<h2>{{ im.file_name }} <span class="badge {{ im.status.replace(' ', '-') }}">{{ im.status }}</span></h2>
{% if im.error %}<p class="error">{{ im.error }}</p>{% endif %}
<div class="result">
  <img class="photo" alt="{{ im.file_name }}" src="/project/image/{{ im.id }}.jpg?size=full">
  <div class="people">
  {% for p in im.people %}
    <div class="card person"><b>person {{ p.id }}</b> <span class="badge {{ p.status.replace(' ', '-') }}">{{ p.status }}</span>
      {{ p.verified }}/33 points verified{% if p.conflict %}; CVAT: {{ p.conflict }}{% endif %}
      {% if p.suspects %}<div>suspect: {% for i, s in p.suspects %}{{ names[i].replace("_", " ") }} ({{ "%.2f"|format(s) }}){{ ", " if not loop.last }}{% endfor %}</div>{% endif %}
    </div>
  {% else %}<p>No people on this image.</p>
  {% endfor %}
  </div>
</div>
{% endblock %}
"""

TEMPLATES = {"base.html": BASE, "check.html": CHECK, "project.html": PROJECT, "image.html": IMAGE}

SCRIPT = """
(function () {
  var form = document.getElementById('upload'), input = document.getElementById('file');
  if (!form || !input) return;
  function send() { document.getElementById('busy').hidden = false; form.submit(); }
  input.addEventListener('change', function () { if (input.files.length) send(); });
  ['dragenter', 'dragover'].forEach(function (t) {
    form.addEventListener(t, function (e) { e.preventDefault(); form.classList.add('over'); });
  });
  ['dragleave', 'drop'].forEach(function (t) {
    form.addEventListener(t, function (e) { e.preventDefault(); form.classList.remove('over'); });
  });
  form.addEventListener('drop', function (e) {
    if (!e.dataTransfer || !e.dataTransfer.files.length) return;
    input.files = e.dataTransfer.files;
    send();
  });
})();
"""
