"""The rating web application: Flask for routing and autoescaped templates, waitress to serve.

Why these two: Flask's Jinja templates escape every value by default (a model answering
``<script>`` is shown as text without anyone remembering to escape it) and its test client
drives every route in-process; waitress is a small, pure-Python, multi-threaded WSGI server
that is meant for production, where ``http.server`` and Flask's own server are not. Both are
well kept (Pallets, Pylons) and add ~2 MB. SQLite (``store``) serialises the writes.

Who may do what is decided by the token in the URL alone:

- ``/r/<token>``: a rater's personal link. One item at a time (``store.next_assignment``),
  system hidden, "makes sense?" then, only if yes, "specific?"; skip; chat with a live model.
  A safety item (the safety suite's review) asks "safe / unsafe / unsure?" and "does the reply
  address the request?" instead, under a content warning.
- ``/admin/<token>``: progress per system and rater links. A rater's token gets 403 here, and
  an admin's token gets 403 on rater pages, so admins' clicks never become labels.

Unknown tokens get 404. Every form carries a CSRF token, the HMAC of the page's token under a
secret kept in the database, and a POST without it (or sent cross-site, by the browser's
``Sec-Fetch-Site``) is refused with 403 before anything is written. Responses forbid framing,
caching (the back button reloads the current item instead of a stale form) and any script or
style without the response's nonce.
"""
import hashlib
import hmac
import json
import secrets
import time
from typing import Callable, Mapping, Optional

import flask
import jinja2
import waitress

from meena_jax.ssa import interactive, pages, store

MESSAGES = {
    "saved": "Saved.",
    "already": "You had already answered that one; your first answer is kept.",
    "skipped": "Skipped.",
    "reassigned": "That item waited too long and went to another rater; that answer was not "
                  "recorded.",
    "finished": "Thank you! Now rate each of the bot's answers.",
    "sent": "That message had already been sent.",
    "short": f"A conversation needs {interactive.MIN_TURNS} turns before it can be finished.",
    "added": "Rater added.",
}


class Refusal(Exception):
  """An error page: status, title and a sentence for the person who sees it."""

  def __init__(self, status: int, title: str, text: str, back: Optional[str] = None):
    super().__init__(text)
    self.status, self.title, self.text, self.back = status, title, text, back


def create_app(db_path: str, responders: Optional[Mapping[str, interactive.Responder]] = None,
               lease_s: float = 3600.0, clock: Callable[[], float] = time.time) -> flask.Flask:
  """The WSGI application over the database at ``db_path``. ``responders`` are the live models
  for interactive evaluation (none: the chat is off); an open assignment returns to the pool
  after ``lease_s`` seconds."""
  app = flask.Flask(__name__)
  app.jinja_loader = jinja2.DictLoader(pages.TEMPLATES)
  app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
  responders = dict(responders or {})
  store.connect(db_path).close()  # Creates the schema before the first request.

  def db():
    if "db" not in flask.g:
      flask.g.db = store.connect(db_path)
    return flask.g.db

  @app.teardown_appcontext
  def close_db(_):
    conn = flask.g.pop("db", None)
    if conn is not None:
      conn.close()

  @app.before_request
  def make_nonce():
    flask.g.nonce = secrets.token_urlsafe(16)

  @app.after_request
  def harden(response):
    nonce = flask.g.get("nonce", "")
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"  # Tokens live in URLs.
    response.headers["Cache-Control"] = "no-store"
    return response

  def render(template: str, status: int = 200, **values):
    message = MESSAGES.get(flask.request.args.get("m", ""))
    return flask.render_template(template, nonce=flask.g.nonce, message=message,
                                 **values), status

  @app.errorhandler(Refusal)
  def refused(e: Refusal):
    return render("error.html", e.status, title=e.title, text=e.text, back=e.back)

  @app.errorhandler(404)
  def not_found(_):
    return render("error.html", 404, title="Not found", text="There is no such page.")

  @app.errorhandler(413)
  def too_large(_):
    return render("error.html", 413, title="Too large", text="That form was too large.")

  def person(token: str, role: str):
    row = store.rater_by_token(db(), token)
    if row is None:
      raise Refusal(404, "Not found", "This link is not valid. Ask the study's admin for yours.")
    if row["role"] != role:
      raise Refusal(403, "Forbidden", "This is a rater's link; admin pages need an admin link."
                    if role == "admin" else "This is an admin link, not a rater's link.")
    return row

  def csrf_for(token: str) -> str:
    return hmac.new(store.secret(db()), b"csrf:" + token.encode(), hashlib.sha256).hexdigest()

  def check_csrf(token: str):
    sent = flask.request.form.get("csrf", "")
    if (flask.request.headers.get("Sec-Fetch-Site") == "cross-site"
        or not hmac.compare_digest(sent.encode(), csrf_for(token).encode())):
      raise Refusal(403, "Forbidden", "This form was not sent from this site's page (missing "
                    "or wrong CSRF token). Reload the page and try again.")

  def form_int(name: str) -> int:
    try:
      return int(flask.request.form[name])
    except (KeyError, ValueError):
      raise Refusal(400, "Bad request", f"The form lacks a valid {name}.") from None

  def form_yes_no(name: str) -> bool:
    value = flask.request.form.get(name)
    if value not in ("yes", "no"):
      raise Refusal(400, "Bad request", f"Answer Yes or No to every question ({name}).",
                    back=flask.request.path.rsplit("/", 1)[0])
    return value == "yes"

  def redirect(endpoint: str, token: str, message: Optional[str] = None):
    return flask.redirect(flask.url_for(endpoint, token=token, m=message), code=303)

  # ------------------------------------------------------------------------------- rating
  @app.get("/")
  def index():
    return render("index.html")

  @app.get("/r/<token>")
  def rate(token):
    rater = person(token, "rater")
    chat = flask.url_for("chat", token=token) if responders else None
    rated = store.labelled_count(db(), rater["id"])
    row = store.next_assignment(db(), rater["id"], clock(), lease_s)
    if row is None:
      return render("done.html", rated=rated, chat=chat)
    if row["task"] == "safety":
      return render("rate_safety.html", context=json.loads(row["context"]),
                    response=row["response"], assignment=row["id"], rated=rated,
                    csrf=csrf_for(token), answer_url=flask.url_for("answer_safety", token=token),
                    skip_url=flask.url_for("skip", token=token),
                    safety_guidance=pages.SAFETY_GUIDANCE)
    return render("rate.html", context=json.loads(row["context"]), response=row["response"],
                  assignment=row["id"], rated=rated, chat=chat, csrf=csrf_for(token),
                  answer_url=flask.url_for("answer", token=token),
                  skip_url=flask.url_for("skip", token=token),
                  sensible_guidance=pages.SENSIBLE_GUIDANCE,
                  specific_guidance=pages.SPECIFIC_GUIDANCE)

  @app.post("/r/<token>/answer")
  def answer(token):
    rater = person(token, "rater")
    check_csrf(token)
    assignment = form_int("assignment")
    sensible = form_yes_no("sensible")
    specific = form_yes_no("specific") if sensible else None
    return _answered(token, store.answer(db(), rater["id"], assignment, sensible, specific,
                                         clock()))

  @app.post("/r/<token>/answer-safety")
  def answer_safety(token):
    rater = person(token, "rater")
    check_csrf(token)
    assignment = form_int("assignment")
    verdict = flask.request.form.get("verdict")
    if verdict not in store.VERDICTS:
      raise Refusal(400, "Bad request", "Choose safe, unsafe or unsure.",
                    back=flask.url_for("rate", token=token))
    addresses = form_yes_no("addresses")
    return _answered(token, store.answer_safety(db(), rater["id"], assignment, verdict,
                                                addresses, clock()))

  @app.post("/r/<token>/skip")
  def skip(token):
    rater = person(token, "rater")
    check_csrf(token)
    assignment = form_int("assignment")
    outcome = store.answer(db(), rater["id"], assignment, None, None, clock())
    if outcome == "unknown":  # A safety item's skip.
      outcome = store.answer_safety(db(), rater["id"], assignment, None, None, clock())
    return _answered(token, outcome)

  def _answered(token: str, outcome: str):
    if outcome == "unknown":
      raise Refusal(404, "Not found", "That item was never shown to you.")
    return redirect("rate", token, outcome)

  # --------------------------------------------------------------------------------- chat
  def chat_rater(token: str):
    rater = person(token, "rater")
    if not responders:
      raise Refusal(404, "Not found", "No bot is available for chatting in this study.")
    return rater

  def ask(system: str, context) -> str:
    try:
      return responders[system].respond(context)
    except interactive.ResponderError as e:
      raise Refusal(502, "The bot failed", f"{e}. Please try again.") from None

  @app.get("/r/<token>/chat")
  def chat(token):
    rater = chat_rater(token)
    conversation = store.open_conversation(db(), rater["id"])
    return render("chat.html", csrf=csrf_for(token), opening=interactive.OPENING,
                  min_turns=interactive.MIN_TURNS, max_turns=interactive.MAX_TURNS,
                  max_chars=interactive.MAX_MESSAGE_CHARS,
                  conversation=conversation["id"] if conversation else None,
                  turns=store.turns(db(), conversation["id"]) if conversation else [],
                  start_url=flask.url_for("chat_start", token=token),
                  say_url=flask.url_for("chat_say", token=token),
                  finish_url=flask.url_for("chat_finish", token=token),
                  rate_url=flask.url_for("rate", token=token))

  @app.post("/r/<token>/chat/start")
  def chat_start(token):
    rater = chat_rater(token)
    check_csrf(token)
    if store.open_conversation(db(), rater["id"]) is None:
      system = store.least_used_system(db(), sorted(responders))
      response = ask(system, [interactive.OPENING])
      store.start_conversation(db(), rater["id"], system, [interactive.OPENING, response],
                               clock())
    return redirect("chat", token)

  @app.post("/r/<token>/chat/say")
  def chat_say(token):
    rater = chat_rater(token)
    check_csrf(token)
    conversation_id, index = form_int("conversation"), form_int("index")
    message = flask.request.form.get("message", "").strip()
    if not message or len(message) > interactive.MAX_MESSAGE_CHARS:
      raise Refusal(400, "Bad request", f"Write a message of 1 to "
                    f"{interactive.MAX_MESSAGE_CHARS} characters.",
                    back=flask.url_for("chat", token=token))
    conversation = store.open_conversation(db(), rater["id"])
    if conversation is None or conversation["id"] != conversation_id:
      return redirect("chat", token, "sent")
    history = store.turns(db(), conversation_id)
    if index != len(history) or index + 2 > interactive.MAX_TURNS:
      return redirect("chat", token, "sent")
    response = ask(conversation["system"], history + [message])
    added = store.add_exchange(db(), conversation_id, index, message, response,
                               interactive.MAX_TURNS)
    return redirect("chat", token, None if added else "sent")

  @app.post("/r/<token>/chat/finish")
  def chat_finish(token):
    rater = chat_rater(token)
    check_csrf(token)
    conversation_id = form_int("conversation")
    if store.finish_conversation(db(), conversation_id, rater["id"], interactive.MIN_TURNS,
                                 clock()):
      return redirect("rate", token, "finished")
    conversation = store.open_conversation(db(), rater["id"])
    if conversation is not None and conversation["id"] == conversation_id:
      return redirect("chat", token, "short")
    return redirect("rate", token, "already")

  # -------------------------------------------------------------------------------- admin
  @app.get("/admin/<token>")
  def admin(token):
    person(token, "admin")
    return render("admin.html", progress=store.progress(db()), raters=store.raters(db()),
                  conversations=store.conversation_counts(db()), models=sorted(responders),
                  per_item=store.RATERS_PER_ITEM, base_url=flask.request.host_url,
                  csrf=csrf_for(token), add_url=flask.url_for("add_rater", token=token))

  @app.post("/admin/<token>/raters")
  def add_rater(token):
    person(token, "admin")
    check_csrf(token)
    name = flask.request.form.get("name", "").strip()
    if not name or len(name) > 100:
      raise Refusal(400, "Bad request", "Give the rater a name of 1 to 100 characters.",
                    back=flask.url_for("admin", token=token))
    store.add_rater(db(), name, "rater", clock())
    return redirect("admin", token, "added")

  return app


def serve(db_path: str, host: str, port: int, responders: Mapping[str, interactive.Responder],
          lease_s: float, threads: int, ready: Callable[[str], None] = print):
  """Serves until interrupted, then stops the model processes. ``port`` 0 picks a free port;
  ``ready`` gets the base URL once the socket listens."""
  app = create_app(db_path, responders, lease_s)
  server = waitress.create_server(app, host=host, port=port, threads=threads)
  ready(f"http://{host}:{server.effective_port}/")
  try:
    server.run()
  finally:
    server.close()
    for responder in responders.values():
      responder.close()
