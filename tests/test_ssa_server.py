"""SSA server end to end: ``python -m meena_jax.ssa serve`` on 127.0.0.1 with real HTTP clients
(20 raters submitting for 30 s lose nothing) and headless Chromium through a rater's session."""
import concurrent.futures
import http.client
import random
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse

import pytest

from meena_jax.ssa import importers, store

XSS = '<script>alert("pwned")</script>'
ECHO_BOT = ("import json, sys\n"
            "for line in sys.stdin:\n"
            "    context = json.loads(line)['context']\n"
            "    print(json.dumps({'response': f'echo {len(context)}: {context[-1]}'}), "
            "flush=True)\n")


def _serve(db: str, *extra: str):
  """Starts the server on a free port; returns (process, base URL)."""
  process = subprocess.Popen(
      [sys.executable, "-m", "meena_jax.ssa", "serve", "--db", db, "--port", "0", *extra],
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  lines = []
  for line in process.stdout:  # the first line says where it listens
    lines.append(line)
    if line.startswith("Serving on "):
      # Keep draining its output so the server never blocks on a full pipe.
      threading.Thread(target=process.stdout.read, daemon=True).start()
      return process, line.split()[-1]
  raise AssertionError(f"the server did not start: {''.join(lines)}")


def _stop(process):
  process.terminate()
  assert process.wait(timeout=10) == 0


class _Rater:
  """One rater's browser-less session over a keep-alive connection."""

  def __init__(self, base: str, token: str):
    url = urllib.parse.urlsplit(base)
    self.connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    self.token = token

  def request(self, method, path, form=None):
    body = urllib.parse.urlencode(form) if form else None
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if form else {}
    self.connection.request(method, path, body, headers)
    response = self.connection.getresponse()
    return response.status, response.getheader("Location", ""), response.read().decode()

  def rate_for(self, deadline: float, rng: random.Random) -> dict:
    """Labels items until the deadline or until none is left; every fifth form is submitted
    twice. Returns {assignment: (sensible, specific)} for each submission the server confirmed
    as saved, and raises on anything unexpected."""
    saved = {}
    while time.monotonic() < deadline:
      status, _, page = self.request("GET", f"/r/{self.token}")
      assert status == 200, page
      if 'id="done"' in page:
        break
      form = {"assignment": re.search(r'name="assignment" value="(\d+)"', page)[1],
              "csrf": re.search(r'name="csrf" value="([0-9a-f]+)"', page)[1]}
      sensible = rng.random() < 0.7
      specific = rng.random() < 0.5 if sensible else None
      form["sensible"] = "yes" if sensible else "no"
      if sensible:
        form["specific"] = "yes" if specific else "no"
      for attempt in range(2 if len(saved) % 5 == 0 else 1):
        status, location, page = self.request("POST", f"/r/{self.token}/answer", form)
        assert status == 303, page
        assert location.endswith("?m=already" if attempt else "?m=saved"), location
      saved[int(form["assignment"])] = (int(sensible), None if specific is None else
                                        int(specific))
    return saved


def test_twenty_concurrent_raters_for_30_seconds_lose_nothing(tmp_path):
  db = str(tmp_path / "r.sqlite")
  conn = store.connect(db)
  store.add_items(conn, [importers.Item(f"k{i}", f"system{i % 3}", (f"context {i}",),
                                        f"response {i}", f"k{i}", "t") for i in range(3000)])
  tokens = [store.add_rater(conn, f"rater {i}") for i in range(20)]
  process, base = _serve(db, "--threads", "8")
  try:
    deadline = time.monotonic() + 30
    with concurrent.futures.ThreadPoolExecutor(len(tokens)) as pool:
      results = list(pool.map(lambda i: _Rater(base, tokens[i]).rate_for(
          deadline, random.Random(i)), range(len(tokens))))
  finally:
    _stop(process)
  sent = {aid: label for result in results for aid, label in result.items()}
  rows = conn.execute("SELECT id, item_id, rater_id, sensible, specific FROM assignments "
                      "WHERE status = 'labelled'").fetchall()
  print(f"{len(rows)} labels from 20 raters in 30 s "
        f"({sum(map(len, results)) / 30:.0f}/s; per rater {sorted(map(len, results))})")
  assert len(sent) == sum(map(len, results))  # no assignment confirmed to two raters
  assert {row["id"]: (row["sensible"], row["specific"]) for row in rows} == sent
  per_item = {}
  for row in rows:
    per_item.setdefault(row["item_id"], set()).add(row["rater_id"])
  assert max(len(raters) for raters in per_item.values()) <= store.RATERS_PER_ITEM
  assert len(rows) > 20 * 20  # it really ran concurrently for a while


def _chromium():
  webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
  browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
  if not (browser and driver):
    pytest.skip("no Chromium: install Debian's chromium and chromium-driver packages")
  from selenium.webdriver.chrome.service import Service  # pylint: disable=import-outside-toplevel
  options = webdriver.ChromeOptions()
  options.binary_location = browser
  for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--no-first-run", "--disable-background-networking", "--disable-sync",
               "--disable-component-update", "--disable-quic", "--window-size=1000,1200"):
    options.add_argument(flag)
  return webdriver.Chrome(service=Service(driver), options=options)


def test_browser_rater_session(tmp_path):
  from selenium.webdriver.common.by import By  # pylint: disable=import-outside-toplevel
  from selenium.webdriver.support.wait import WebDriverWait  # pylint: disable=import-outside-toplevel
  browser = _chromium()

  def submit(button: str, by=By.ID):
    """Clicks what sends a form or follows a link, and waits until the next page has loaded
    (a new page has no ``window.stale``)."""
    browser.execute_script("window.stale = true")
    browser.find_element(by, button).click()
    WebDriverWait(browser, 20).until(lambda b: b.execute_script(
        "return window.stale === undefined && document.readyState === 'complete'"))

  db = str(tmp_path / "r.sqlite")
  conn = store.connect(db)
  store.add_items(conn, [importers.Item("x", "meena", ("Do you code?", "Yes, in <b>HTML</b>."),
                                        XSS, "x", "t"),
                         importers.Item("y", "human", ("I love tennis.",), "That's nice.", "y",
                                        "t")])
  token = store.add_rater(conn, "alice")
  bot = tmp_path / "echo_bot.py"
  bot.write_text(ECHO_BOT)
  process, base = _serve(db, "--model", f"bot={sys.executable} {bot}")
  try:
    browser.get(f"{base}r/{token}")
    seen = []
    for answer in ("no", "yes"):  # two static items, in whichever order they come
      specific = browser.find_element(By.ID, "specific")
      assert not specific.is_displayed()  # asked only once the response makes sense
      seen.append(browser.find_element(By.ID, "response").text)
      browser.find_element(By.ID, f"sensible-{answer}").click()
      assert specific.is_displayed() == (answer == "yes")
      if answer == "yes":
        browser.find_element(By.ID, "specific-yes").click()
      if seen[-1].endswith(XSS):
        browser.save_screenshot(str(tmp_path / "xss.png"))
      submit("submit")
      assert "Saved" in browser.find_element(By.ID, "message").text
    assert sorted(seen) == sorted(["B:" + XSS, "B:That's nice."])  # text, not markup
    assert "nothing more for you to rate" in browser.find_element(By.ID, "done").text
    submit("chat with a bot", By.LINK_TEXT)
    submit("start")
    for n in range(6):
      browser.find_element(By.ID, "chat-message").send_keys(f"Tell me more, part {n}")
      submit("send")
    assert "echo 13: Tell me more, part 5" in browser.page_source
    browser.save_screenshot(str(tmp_path / "chat.png"))
    submit("finish")
    for _ in range(7):  # each bot turn, in order
      browser.find_element(By.ID, "sensible-yes").click()
      browser.find_element(By.ID, "specific-no").click()
      submit("submit")
    browser.find_element(By.ID, "done")
    browser.save_screenshot(str(tmp_path / "done.png"))
  finally:
    browser.quit()
    _stop(process)
  labels = conn.execute("SELECT i.kind, COUNT(*) FROM assignments a JOIN items i ON "
                        "i.id = a.item_id WHERE a.status = 'labelled' GROUP BY i.kind").fetchall()
  assert [tuple(r) for r in labels] == [("interactive", 7), ("static", 2)]
  for name in ("xss.png", "chat.png", "done.png"):
    assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
  print(f"screenshots: {tmp_path}/{{xss,chat,done}}.png")
