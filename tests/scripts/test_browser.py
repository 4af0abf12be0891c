"""report.html and the history page in a real browser (headless Chromium, Debian's `chromium`):
screenshots that are not blank, the first headline table whole in the first 1280 x 800 viewport,
and no resource loaded from anywhere but the page itself. Run by ctest as a program: exit 77
(skipped) only when chromium is not installed (`scripts/cloakbench test` installs it)."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

import helpers  # noqa: F401  (puts scripts/ on sys.path for cloakpy)
from helpers import FIXTURES, default_run_report, image_content
from cloakpy import history

VIEWPORT = (1280, 800)
TIMEOUT = 60  # seconds per browser run
SKIPPED = 77
# Where the screenshots stay after the test, to look at.
SHOTS = os.environ.get("CLOAK_BROWSER_SHOTS",
                       os.path.join(tempfile.gettempdir(), "cloakbench-browser-%d" % os.getuid()))

# Appended to a copy of the page: reports at the load event, into the DOM that --dump-dom
# prints, where the first headline table is, how many of its rows are inside the viewport,
# every resource the page loaded (Resource Timing) and every src/href/url() that points off
# the page.
PROBE = """<script>
addEventListener("load", function () {
  var t = document.querySelector("table.headline"), rect = null, rows = 0;
  if (t) {
    var r = t.getBoundingClientRect();
    rect = {top: r.top, bottom: r.bottom, left: r.left, right: r.right, height: r.height};
    [].forEach.call(t.querySelectorAll("tr"), function (tr) {
      if (tr.getBoundingClientRect().bottom <= innerHeight) rows++;
    });
  }
  var links = [].map.call(document.querySelectorAll("[src],[href],[*|href]"), function (e) {
    return e.getAttribute("src") || e.getAttribute("href") || e.getAttribute("xlink:href") || "";
  });
  var css = [].map.call(document.querySelectorAll("style"), function (s) { return s.textContent; });
  var external = links.concat((css.join(" ").match(/url\\([^)]*\\)/g) || [])).filter(function (u) {
    return /^\\s*(url\\(\\s*['"]?)?\\s*(https?:|\\/\\/|ftp:)/i.test(u);
  });
  var loaded = performance.getEntriesByType("resource").map(function (e) { return e.name; });
  var pre = document.createElement("pre");
  pre.id = "cloak-probe";
  pre.textContent = JSON.stringify({rect: rect, rows_visible: rows,
    rows: t ? t.querySelectorAll("tr").length : 0, viewport: [innerWidth, innerHeight],
    external: external, loaded: loaded, svg_links: document.querySelectorAll("svg a").length});
  document.body.appendChild(pre);
});
</script>"""


def chromium():
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


def run_browser(args, profile):
    """Run headless chromium with a bounded time; return its stdout. Network names resolve to
    nothing, so a page that reached out would fail to load the resource (and the probe sees it)."""
    argv = [chromium(), "--headless", "--disable-gpu", "--hide-scrollbars",
            "--disable-dev-shm-usage", "--no-first-run", "--user-data-dir=" + profile,
            "--window-size=%d,%d" % VIEWPORT, "--host-resolver-rules=MAP * ~NOTFOUND"]
    if os.geteuid() == 0:
        argv.append("--no-sandbox")  # chromium refuses to run as root with its sandbox
    p = subprocess.Popen(argv + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True, stdin=subprocess.DEVNULL)
    try:
        out, err = p.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        raise AssertionError("chromium did not finish within %d s: %s" % (TIMEOUT, args))
    if p.returncode != 0:
        raise AssertionError("chromium exited %d: %s" % (p.returncode, err[-2000:]))
    return out


def probe(page, profile):
    """Load a copy of the page with PROBE appended and return what it reported."""
    with open(page, encoding="utf-8") as f:
        text = f.read()
    probed = os.path.join(os.path.dirname(page), "probe-" + os.path.basename(page))
    with open(probed, "w", encoding="utf-8") as f:
        f.write(text.replace("</body>", PROBE + "</body>"))
    # the probe runs at the load event, once every resource was fetched or failed
    dom = run_browser(["--virtual-time-budget=10000", "--dump-dom", "file://" + probed], profile)
    m = re.search(r'<pre id="cloak-probe">(.*?)</pre>', dom, re.S)
    if not m:
        raise AssertionError("the probe did not run in %s" % page)
    return json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&")
                      .replace("&lt;", "<").replace("&gt;", ">"))


def screenshot(page, name, profile):
    global SHOTS
    os.makedirs(SHOTS, exist_ok=True)
    if not os.access(SHOTS, os.W_OK):
        # Someone else's (the real root's, seen from a user namespace where we are uid 0 too).
        SHOTS = tempfile.mkdtemp(prefix="cloakbench-browser-")
    path = os.path.join(SHOTS, name)
    if os.path.exists(path):
        os.remove(path)
    run_browser(["--screenshot=" + path, "file://" + page], profile)
    if not os.path.isfile(path):
        raise AssertionError("chromium wrote no screenshot of %s" % page)
    return path


@unittest.skipUnless(chromium(), "chromium is not installed (apt-get install -y "
                                 "--no-install-recommends chromium)")
class PagesInABrowser(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="cloakbench-browser-")
        cls.profile = os.path.join(cls.tmp, "profile")
        # report.write_report(the default run, every=16), drawn once for the modules that need it
        cls.report_dir, _, _ = default_run_report(every=16)
        cls.report = os.path.join(cls.report_dir, "report.html")
        # the history of the fixture runs, with a report beside one of them to link to
        cls.history_in = os.path.join(cls.tmp, "results")
        shutil.copytree(os.path.join(FIXTURES, "history"), cls.history_in)
        cls.history_dir = os.path.join(cls.tmp, "history")
        os.makedirs(cls.history_dir)
        history.write_history([cls.history_in], cls.history_dir, permutations=499)
        cls.history = os.path.join(cls.history_dir, "history.html")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)
        shutil.rmtree(cls.report_dir, ignore_errors=True)

    def assert_not_blank(self, path):
        drawn, std = image_content(path)
        self.assertGreater(drawn, 0.05, "%s is nearly blank" % path)
        self.assertGreater(std, 0.05, "%s is nearly one colour" % path)

    def test_report_screenshot_shows_the_headline_table(self):
        shot = screenshot(self.report, "report.png", self.profile)
        self.assert_not_blank(shot)
        seen = probe(self.report, self.profile)
        # Headless chromium's --dump-dom gives a 1280 x 800 window a smaller viewport (657 px high
        # in chromium 156, about a laptop browser's): the table must fit the one it reports.
        width, height = seen["viewport"]
        self.assertEqual(width, VIEWPORT[0])
        self.assertGreaterEqual(height, 600)
        rect = seen["rect"]
        self.assertIsNotNone(rect, "no headline table in report.html")
        self.assertGreaterEqual(rect["top"], 0)
        self.assertLessEqual(rect["bottom"], height, "the first headline table does not fit "
                             "the first %d x %d viewport: %s" % (width, height, rect))
        self.assertEqual(seen["rows_visible"], seen["rows"])
        self.assertGreaterEqual(seen["rows"], 13)  # header and 4 variants x 3 patterns
        # the table's pixels are drawn where the DOM says it is: its grid lines are not white
        import matplotlib.image
        img = matplotlib.image.imread(shot)[..., :3]
        top, bottom = int(rect["top"]), int(min(rect["bottom"], img.shape[0] - 1))
        region = img[top:bottom, int(rect["left"]):int(rect["right"])]
        self.assertGreater((region < 0.9).any(axis=-1).mean(), 0.05)

    def test_report_loads_nothing_from_outside(self):
        seen = probe(self.report, self.profile)
        self.assertEqual(seen["external"], [])
        self.assertEqual([u for u in seen["loaded"] if not u.startswith("data:")], [])

    def test_history_page_is_drawn_linked_and_self_contained(self):
        shot = screenshot(self.history, "history.png", self.profile)
        self.assert_not_blank(shot)
        seen = probe(self.history, self.profile)
        self.assertEqual(seen["external"], [])
        self.assertEqual([u for u in seen["loaded"] if not u.startswith("data:")], [])
        self.assertGreaterEqual(seen["svg_links"], 24)  # every point links to its run

    def test_the_probe_sees_a_page_that_reaches_out(self):
        # The checks above could fail: a page with one remote image is caught twice, by its
        # markup and by what the browser tried to load.
        page = os.path.join(self.tmp, "reaches-out.html")
        with open(page, "w") as f:
            f.write("<!DOCTYPE html><html><body><p>x</p><img src=\"http://example.invalid/a.png\">"
                    "</body></html>")
        seen = probe(page, self.profile)
        self.assertEqual(seen["external"], ["http://example.invalid/a.png"])
        self.assertEqual(seen["loaded"], ["http://example.invalid/a.png"])
        self.assertIsNone(seen["rect"])


if __name__ == "__main__":
    if not chromium():
        print("chromium is not installed: `scripts/cloakbench test` installs it as root "
              "(apt-get install -y --no-install-recommends chromium); skipped")
        sys.exit(SKIPPED)
    print("screenshots: %s" % SHOTS)
    unittest.main()
