"""Render the built documentation site in headless Chromium, offline, and check every formula.

Usage::

    python scripts/check_docs_render.py build/site [--screenshots DIR] [--width 1280]

Run by ``.ci/run`` after ``make docs``. Each page of the site (every ``index.html``) is opened
from ``file://`` by Debian's ``chromium`` with the network cut off
(``--host-resolver-rules="MAP * ~NOTFOUND"``: no host name resolves) and a net log of every
request; the page's own record of what it loaded (``performance.getEntriesByType``) is
checked as well. A copy of the page carries a small probe script that waits for MathJax to
finish and then reports, for each formula (each ``.arithmatex`` element of pymdownx.arithmatex):

- rendered: MathJax produced its output for it;
- raw: its visible text still shows TeX delimiters (``\\(``, ``\\[``): not typeset;
- error: a MathJax error (``merror``, "Math Processing Error");
- cut: a display formula wider than the page that is clipped instead of scrolling
  (``overflow-x`` must be ``auto`` or ``scroll`` when it does not fit).

It also flags inline code showing literal double backticks (a docstring type on the API
page).

The script fails (exit status 1) when MathJax does not load on a page, when any formula is
raw, an error or cut, when inline code shows double backticks, or when any request left
``file://`` (an ``http(s)``/``ws`` URL in the net log or the page's resource list). It
prints one line per page: formulas, rendered, wide-but-scrolling, problems.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

#: Injected before </body> of a copy of each page: waits for MathJax's queue, then writes its
#: findings as JSON into <pre id="render-report">, which --dump-dom prints.
PROBE = r"""
<script>
(function () {
  function report(out) {
    var pre = document.createElement("pre");
    pre.id = "render-report";
    pre.textContent = JSON.stringify(out);
    document.body.appendChild(pre);
  }
  function inspect() {
    var out = {mathjax: true, formulas: 0, rendered: 0, wide: 0, raw: [], errors: [], cut: [],
               requests: []};
    out.backticks = [];
    document.querySelectorAll("code").forEach(function (el) {
      if (!el.closest("pre") && el.textContent.indexOf("``") >= 0) {
        out.backticks.push(el.textContent.slice(0, 60));
      }
    });
    performance.getEntriesByType("resource").forEach(function (entry) {
      if (!/^(file|data|blob):/.test(entry.name)) { out.requests.push(entry.name); }
    });
    document.querySelectorAll(".arithmatex").forEach(function (el, i) {
      out.formulas += 1;
      var visible = el.innerText || "";
      var label = "#" + (i + 1) + " " + (el.textContent || "").trim().slice(0, 60);
      if (el.querySelector(".MathJax, .MathJax_Display")) { out.rendered += 1; }
      if (/\\\(|\\\[|\\[a-zA-Z]+/.test(visible)) { out.raw.push(label); }
      if (el.querySelector(".merror") || /Math Processing Error/.test(visible)) {
        out.errors.push(label);
      }
      if (el.tagName === "DIV") {
        var box = el.querySelector(".MathJax_Display") || el;
        var overflow = getComputedStyle(el).overflowX;
        var tooWide = el.scrollWidth > el.clientWidth + 1
          || box.scrollWidth > box.clientWidth + 1;
        if (tooWide) {
          if (overflow === "auto" || overflow === "scroll") { out.wide += 1; }
          else { out.cut.push(label); }
        }
      }
    });
    report(out);
  }
  window.addEventListener("load", function () {
    if (!window.MathJax || !window.MathJax.Hub) {
      report({mathjax: false});
      return;
    }
    MathJax.Hub.Queue(inspect);
  });
})();
</script>
"""

#: Headless, and none of the browser's own background traffic (updates, sync, spelling
#: dictionaries, accounts), so that the net log holds only what the page asked for.
QUIET = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-default-apps", "--disable-extensions",
         "--disable-features=SpellCheck,Translate,OptimizationHints,MediaRouter,"
         "AutofillServerCommunication,CertificateTransparencyComponentUpdater")

#: A request in Chromium's net log: its traffic annotation (which part of the browser asked)
#: and its URL. Headless Chromium still makes a few requests of its own (clock, component
#: updates, accounts) whatever the flags; they are told apart from the page's by their
#: annotations, recorded from a blank page first (`browser_annotations`).
NETWORK_REQUEST = re.compile(
    r'"traffic_annotation":(\d+),"url":"((?:https?|wss?|ftp)://[^"]*)"')


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("check_docs_render: chromium not found (Debian: apt-get install chromium)")


def network_requests(netlog: Path) -> list[tuple[str, str]]:
    """(annotation, url) of every network request in a net log (none for file:// loads)."""
    if not netlog.exists():
        return []
    return NETWORK_REQUEST.findall(netlog.read_text(errors="replace"))


def browser_annotations(chromium: str, netlog: Path) -> set[str]:
    """The traffic annotations of the requests Chromium makes by itself, on about:blank."""
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [chromium, *QUIET, f"--user-data-dir={profile}",
             '--host-resolver-rules=MAP * ~NOTFOUND', f"--log-net-log={netlog}",
             "--virtual-time-budget=5000", "--dump-dom", "about:blank"],
            capture_output=True, text=True, timeout=300, check=False,
        )
    return {annotation for annotation, _url in network_requests(netlog)}


def render(chromium: str, page: Path, netlog: Path, width: int) -> dict:
    """Open a probed copy of ``page`` offline; return the probe's report."""
    html = page.read_text(encoding="utf-8")
    if "</body>" not in html:
        return {"mathjax": False, "problem": "no </body> in the page"}
    probed = page.with_name(".render-check.html")
    probed.write_text(html.replace("</body>", PROBE + "</body>", 1), encoding="utf-8")
    try:
        with tempfile.TemporaryDirectory() as profile:
            done = subprocess.run(
                [chromium, *QUIET, f"--user-data-dir={profile}",
                 '--host-resolver-rules=MAP * ~NOTFOUND', f"--log-net-log={netlog}",
                 "--allow-file-access-from-files", f"--window-size={width},1000",
                 "--virtual-time-budget=30000", "--dump-dom", probed.as_uri()],
                capture_output=True, text=True, timeout=300, check=False,
            )
    finally:
        probed.unlink()
    found = re.search(r'<pre id="render-report">(.*?)</pre>', done.stdout, re.S)
    if not found:
        return {"mathjax": False, "problem": "no report (the page did not finish loading)"}
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&")
                      .replace("&lt;", "<").replace("&gt;", ">"))


def screenshot(chromium: str, page: Path, target: Path, width: int) -> None:
    """A PNG of ``page`` as a reader sees it (offline), for a person to look at."""
    with tempfile.TemporaryDirectory() as profile:
        try:
            subprocess.run(
                [chromium, *QUIET, "--hide-scrollbars", f"--user-data-dir={profile}",
                 "--host-resolver-rules=MAP * ~NOTFOUND", "--allow-file-access-from-files",
                 f"--window-size={width},3000", "--virtual-time-budget=30000",
                 f"--screenshot={target}", page.as_uri()],
                capture_output=True, text=True, timeout=600, check=False,
            )
        except subprocess.TimeoutExpired:  # a picture for a person: a note, not a failure
            print(f"    (no screenshot of {page}: chromium took over 10 minutes)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("site", type=Path, help="the built site (mkdocs site_dir)")
    parser.add_argument("--width", type=int, default=1280, help="window width in px")
    parser.add_argument("--screenshots", type=Path, help="also save a PNG of each page here")
    args = parser.parse_args(argv)
    site = args.site.resolve()
    pages = sorted(p for p in site.rglob("index.html")
                   if p.parent.name not in ("search", "assets") and "assets" not in p.parts)
    if not pages:
        print(f"check_docs_render: no index.html under {site}", file=sys.stderr)
        return 1
    chromium = find_chromium()
    failures = 0
    totals = {"formulas": 0, "rendered": 0, "wide": 0}
    with tempfile.TemporaryDirectory() as logs:
        own = browser_annotations(chromium, Path(logs) / "blank.json")
        for number, page in enumerate(pages):
            netlog = Path(logs) / f"net{number}.json"
            result = render(chromium, page, netlog, args.width)
            left = [url for annotation, url in network_requests(netlog) if annotation not in own]
            name = str(page.parent.relative_to(site)) if page.parent != site else "index"
            problems = []
            if not result.get("mathjax"):
                problems.append(result.get("problem", "MathJax did not load"))
            for kind in ("raw", "errors", "cut", "backticks"):
                for label in result.get(kind, []):
                    problems.append(f"{kind}: {label}")
            left = sorted(set(left) | set(result.get("requests", [])))
            problems += [f"network request: {url}" for url in left]
            for key in totals:
                totals[key] += result.get(key, 0)
            print(f"{name:<16} formulas {result.get('formulas', 0):4d}  rendered "
                  f"{result.get('rendered', 0):4d}  wide (scrolls) {result.get('wide', 0):2d}  "
                  + ("ok" if not problems else "FAIL"))
            for problem in problems:
                print(f"    {problem}")
            failures += bool(problems)
            if args.screenshots:
                args.screenshots.mkdir(parents=True, exist_ok=True)
                screenshot(chromium, page, args.screenshots / f"{name.replace('/', '_')}.png",
                           args.width)
    print(f"{len(pages)} pages, {totals['formulas']} formulas, {totals['rendered']} rendered, "
          f"{totals['wide']} wide ones scroll; "
          + ("no raw TeX, no MathJax error, no network request" if not failures
             else f"{failures} page(s) FAILED"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
