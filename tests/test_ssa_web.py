"""SSA web app through Flask's test client: escaping, hidden systems, CSRF, roles, labels written
once, and interactive evaluation against a fake model speaking the JSON-lines protocol."""
import re
import sys
import textwrap

import pytest

from meena_jax.ssa import importers, interactive, store, web

XSS = '<script>alert("pwned")</script>'


@pytest.fixture
def site(tmp_path):
  """An app over a database with two items of a system whose name must never show."""
  db = str(tmp_path / "r.sqlite")
  conn = store.connect(db)
  store.add_items(conn, [
      # The key holds a character no random token (URL-safe base64, hex) can: a nonce or a
      # rater link never contains it by chance.
      importers.Item("key.1", "SECRETSYSTEM", ("<b>bold</b> & co",), XSS, "key.1", "t:1"),
      importers.Item("k2", "SECRETSYSTEM", ("Hi!",), "Hello there.", "k2", "t:2")])
  tokens = {"rater": store.add_rater(conn, "alice"), "other": store.add_rater(conn, "bob"),
            "admin": store.add_rater(conn, "boss", "admin")}
  app = web.create_app(db)
  app.testing = True
  return app.test_client(), tokens, conn


def _form(page: str) -> dict:
  return {"assignment": re.search(r'name="assignment" value="(\d+)"', page)[1],
          "csrf": re.search(r'name="csrf" value="([0-9a-f]+)"', page)[1]}


def _labels(conn):
  return [tuple(r) for r in conn.execute(
      "SELECT item_id, rater_id, sensible, specific FROM assignments WHERE status = 'labelled'")]


def test_model_output_is_escaped_and_the_system_hidden(site):
  client, tokens, _ = site
  pages = []
  for _ in range(2):  # both items, whichever order they come in
    page = client.get(f"/r/{tokens['rater']}").get_data(as_text=True)
    pages.append(page)
    client.post(f"/r/{tokens['rater']}/skip", data=_form(page))
  page = next(p for p in pages if "alert" in p)
  assert "&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;" in page
  assert "&lt;b&gt;bold&lt;/b&gt; &amp; co" in page
  assert "<script>alert" not in page and "<b>" not in page
  # The page's own script is the only one and carries the nonce the CSP allows.
  response = client.get(f"/r/{tokens['other']}")
  nonce = re.search(r"script-src 'nonce-([^']+)'", response.headers["Content-Security-Policy"])[1]
  assert re.findall(r"<script[^>]*>", response.get_data(as_text=True)) == [
      f'<script nonce="{nonce}">']
  for page in pages + [response.get_data(as_text=True)]:
    assert "SECRETSYSTEM" not in page and "key.1" not in page
  assert "Does the response make sense?" in page and "Roger Federer" in page  # the guidance


def test_forms_without_the_csrf_token_are_refused(site):
  client, tokens, conn = site
  url = f"/r/{tokens['rater']}"
  good = dict(_form(client.get(url).get_data(as_text=True)), sensible="yes", specific="no")
  bob = _form(client.get(f"/r/{tokens['other']}").get_data(as_text=True))["csrf"]
  for data, headers in [({k: v for k, v in good.items() if k != "csrf"}, {}),
                        (dict(good, csrf="0" * 64), {}),
                        (dict(good, csrf=bob), {}),  # another rater's token
                        (good, {"Sec-Fetch-Site": "cross-site"})]:
    response = client.post(f"{url}/answer", data=data, headers=headers)
    assert response.status_code == 403 and "CSRF" in response.get_data(as_text=True)
    assert client.post(f"{url}/skip", data=data, headers=headers).status_code == 403
  assert _labels(conn) == []
  assert client.post(f"{url}/answer", data=good).status_code == 303
  assert len(_labels(conn)) == 1
  admin = f"/admin/{tokens['admin']}/raters"
  assert client.post(admin, data={"name": "eve"}).status_code == 403
  assert len(store.raters(conn)) == 3


def test_admin_pages_refuse_rater_tokens_and_rater_pages_refuse_admins(site):
  client, tokens, conn = site
  rater_csrf = _form(client.get(f"/r/{tokens['rater']}").get_data(as_text=True))["csrf"]
  assert client.get(f"/admin/{tokens['rater']}").status_code == 403
  assert client.post(f"/admin/{tokens['rater']}/raters",
                     data={"name": "eve", "csrf": rater_csrf}).status_code == 403
  assert client.get(f"/r/{tokens['admin']}").status_code == 403
  assert client.get("/admin/not-a-token").status_code == 404
  assert client.get("/r/not-a-token").status_code == 404
  assert len(store.raters(conn)) == 3
  page = client.get(f"/admin/{tokens['admin']}").get_data(as_text=True)
  row = re.search(r"<td>SECRETSYSTEM</td>(.*?)</tr>", page, re.S)[1]
  assert re.findall(r'class="n">(\d+)<', row) == ["2", "0", "0", "1", "0"]  # one item is open
  csrf = _form(page.replace('name="assignment"', 'name="x"') + 'name="assignment" value="0"')
  response = client.post(f"/admin/{tokens['admin']}/raters",
                         data={"name": "<i>carol</i>", "csrf": csrf["csrf"]})
  assert response.status_code == 303
  page = client.get(response.headers["Location"]).get_data(as_text=True)
  assert "&lt;i&gt;carol&lt;/i&gt;" in page and "Rater added." in page
  carol = [r for r in store.raters(conn) if r["name"] == "<i>carol</i>"][0]
  assert f"/r/{carol['token']}" in page


def test_double_submit_back_button_and_two_tabs_write_one_label(site):
  client, tokens, conn = site
  url = f"/r/{tokens['rater']}"
  tab1 = _form(client.get(url).get_data(as_text=True))
  tab2 = _form(client.get(url).get_data(as_text=True))
  assert tab1 == tab2  # a second tab shows the same open item
  first = client.post(f"{url}/answer", data=dict(tab1, sensible="yes", specific="yes"))
  assert first.status_code == 303 and first.headers["Location"].endswith("?m=saved")
  again = client.post(f"{url}/answer", data=dict(tab1, sensible="yes", specific="yes"))
  other_tab = client.post(f"{url}/answer", data=dict(tab2, sensible="no"))
  assert again.headers["Location"].endswith("?m=already")
  assert other_tab.headers["Location"].endswith("?m=already")
  assert "your first answer is kept" in client.get(
      other_tab.headers["Location"]).get_data(as_text=True)
  (label,) = _labels(conn)
  assert label[2:] == (1, 1)
  nxt = _form(client.get(url).get_data(as_text=True))
  assert nxt["assignment"] != tab1["assignment"]
  # Back button to the first item after answering the second: still one label each.
  client.post(f"{url}/answer", data=dict(nxt, sensible="no"))
  client.post(f"{url}/answer", data=dict(tab1, sensible="no"))
  assert sorted(l[2:] for l in _labels(conn)) == [(0, None), (1, 1)]
  assert "nothing more for you to rate" in client.get(url).get_data(as_text=True)
  # Someone else's assignment number is not found, not answered.
  response = client.post(f"/r/{tokens['other']}/answer",
                         data=dict(nxt, csrf=_form(client.get(f"/r/{tokens['other']}")
                                                   .get_data(as_text=True))["csrf"],
                                   sensible="yes", specific="no"))
  assert response.status_code == 404 and len(_labels(conn)) == 2


def test_specific_is_asked_only_when_sensible(site):
  client, tokens, conn = site
  url = f"/r/{tokens['rater']}"
  form = _form(client.get(url).get_data(as_text=True))
  for bad in [{}, {"sensible": "maybe"}, {"sensible": "yes"}, {"sensible": "yes",
                                                               "specific": "perhaps"}]:
    assert client.post(f"{url}/answer", data=dict(form, **bad)).status_code == 400
  assert _labels(conn) == []
  client.post(f"{url}/answer", data=dict(form, sensible="no", specific="yes"))
  assert [l[2:] for l in _labels(conn)] == [(0, None)]  # not sensible: specificity not kept


ECHO_BOT = """
import json, sys
for line in sys.stdin:
    context = json.loads(line)["context"]
    print(json.dumps({"response": f"echo {len(context)}: {context[-1]} <script>x()</script>"}),
          flush=True)
"""


@pytest.fixture
def chat_site(tmp_path):
  script = tmp_path / "echo_bot.py"
  script.write_text(ECHO_BOT)
  db = str(tmp_path / "r.sqlite")
  token = store.add_rater(store.connect(db), "alice")
  bot = interactive.Responder("SECRETBOT", [sys.executable, str(script)], timeout_s=30)
  app = web.create_app(db, {"SECRETBOT": bot})
  app.testing = True
  yield app.test_client(), token, store.connect(db)
  bot.close()


def _chat_form(page, names=("csrf", "conversation", "index")):
  return {name: re.search(rf'name="{name}" value="([^"]+)"', page)[1] for name in names}


def test_interactive_chat_from_hi_to_rating_every_bot_turn(chat_site):
  client, token, conn = chat_site
  url = f"/r/{token}/chat"
  page = client.get(url).get_data(as_text=True)
  csrf = re.search(r'name="csrf" value="([^"]+)"', page)[1]
  assert client.post(f"{url}/start", data={}).status_code == 403
  for _ in range(2):  # a double click starts one conversation
    assert client.post(f"{url}/start", data={"csrf": csrf}).status_code == 303
  page = client.get(url).get_data(as_text=True)
  assert "echo 1: Hi! &lt;script&gt;x()&lt;/script&gt;" in page and "<script>x" not in page
  for n in range(2, 28, 2):
    assert ('id="finish"' in page) == (n >= interactive.MIN_TURNS)
    form = _chat_form(page)
    assert form["index"] == str(n)
    response = client.post(f"{url}/say", data=dict(form, message=f"message {n}"))
    assert response.headers["Location"].endswith("/chat")
    if n == 4:  # a double submit of the same message adds nothing
      response = client.post(f"{url}/say", data=dict(form, message=f"message {n}"))
      assert response.headers["Location"].endswith("?m=sent")
    page = client.get(url).get_data(as_text=True)
  assert "echo 27: message 26" in page
  assert 'id="send"' not in page  # 28 turns: the chat is over
  assert "SECRETBOT" not in page
  finish = _chat_form(page, ("csrf", "conversation"))
  response = client.post(f"{url}/finish", data=finish)
  assert response.headers["Location"].endswith("?m=finished")
  assert client.post(f"{url}/finish", data=finish).headers["Location"].endswith("?m=already")
  seen = []
  for _ in range(14):
    page = client.get(f"/r/{token}").get_data(as_text=True)
    seen.append(re.search(r'id="response"><span class="who">B:</span>([^<]*)', page)[1])
    client.post(f"/r/{token}/answer", data=dict(_form(page), sensible="yes", specific="yes"))
  assert seen == [f"echo {i}: {'Hi!' if i == 1 else f'message {i - 1}'} "
                  "&lt;script&gt;x()&lt;/script&gt;" for i in range(1, 28, 2)]
  rows = store.label_rows(conn)
  assert len(rows) == 14 and {r["system"] for r in rows} == {"SECRETBOT"}
  assert {r["kind"] for r in rows} == {"interactive"}


def test_chat_needs_14_turns_to_finish_and_refuses_empty_messages(chat_site):
  client, token, conn = chat_site
  url = f"/r/{token}/chat"
  csrf = re.search(r'name="csrf" value="([^"]+)"', client.get(url).get_data(as_text=True))[1]
  client.post(f"{url}/start", data={"csrf": csrf})
  form = _chat_form(client.get(url).get_data(as_text=True))
  assert client.post(f"{url}/say", data=dict(form, message="   ")).status_code == 400
  response = client.post(f"{url}/finish", data={"csrf": csrf, "conversation":
                                                form["conversation"]})
  assert response.headers["Location"].endswith("?m=short")
  assert store.turns(conn, int(form["conversation"])) == ["Hi!", "echo 1: Hi! <script>x()</script>"]


@pytest.mark.parametrize("body, why", [
    ("import sys; sys.exit(3)", "exited (code 3) without answering"),
    ("import sys\nfor line in sys.stdin:\n    print('not json', flush=True)", "not a JSON line"),
    ("import sys, time\nfor line in sys.stdin:\n    time.sleep(30)", "no answer within 0.5 s"),
])
def test_responder_failures_are_reported_and_the_model_restarted(tmp_path, body, why):
  script = tmp_path / "bot.py"
  script.write_text(body)
  responder = interactive.Responder("bot", [sys.executable, str(script)], timeout_s=0.5)
  try:
    with pytest.raises(interactive.ResponderError, match=re.escape(why)):
      responder.respond(["Hi!"])
    script.write_text(textwrap.dedent(ECHO_BOT))  # the next turn starts the command afresh
    assert responder.respond(["Hi!", "Hello", "How are you?"]).startswith("echo 3: How are")
  finally:
    responder.close()
